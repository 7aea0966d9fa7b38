{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_as_of_date_partition() }}",
        post_hook="{{ delete_erased_users('int_users_with_privacy_flags') }}",
    )
}}

{%- set share_categories = get_share_categories() %}

with

users as (

    select * from {{ ref('int_users_with_privacy_flags') }}

),

spine as (

    -- every user signed up by D and not erased, observed at the end of D
    select
        user_id as spine_key,
        user_id,
        {{ as_of_cutoff_sql() }} as reference_at,
        {{ as_of_date_sql() }} as reference_date
    from users
    where not is_erased

),

{{ point_in_time_features('spine', share_categories, daily_activity=true) }},

user_profiles as (

    select
        users.user_id,
        {{ as_of_date_sql() }} as as_of_date,
        users.country,
        {%- for column in point_in_time_feature_columns(share_categories) %}
        point_in_time_features.{{ column }},
        {%- endfor %}
        users.is_email_opt_in,
        users.is_ads_opt_in,
        users.is_email_suppressed
    from spine
    inner join users
        on spine.user_id = users.user_id
    inner join point_in_time_features
        on spine.spine_key = point_in_time_features.spine_key

)

select * from user_profiles
