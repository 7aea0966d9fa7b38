{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        pre_hook="{{ delete_as_of_date_partition() }}",
        post_hook="{{ delete_erased_users('dim_users') }}",
    )
}}

with

audience_definitions as (

    select *
    from {{ source('ml', 'audience_definitions') }}
    where as_of_date = {{ as_of_date_sql() }}

),

user_profiles as (

    select *
    from {{ ref('user_profiles') }}
    where as_of_date = {{ as_of_date_sql() }}

),

user_segments as (

    select *
    from {{ source('ml', 'user_segments') }}
    where as_of_date = {{ as_of_date_sql() }}

),

campaign_scores as (

    select *
    from {{ source('ml', 'campaign_scores') }}
    where as_of_date = {{ as_of_date_sql() }}

),

users as (

    select * from {{ ref('dim_users') }}

),

candidates as (

    -- every audience rule against every profile of D: definitions are a handful of rows
    select
        audience_definitions.audience_name,
        audience_definitions.channel,
        audience_definitions.segment_name as required_segment_name,
        audience_definitions.min_response_probability,
        audience_definitions.max_recency_days,
        audience_definitions.min_recency_days,
        audience_definitions.min_orders_lifetime,
        user_profiles.user_id,
        user_profiles.recency_days,
        user_profiles.count_orders_lifetime,
        user_profiles.is_email_opt_in,
        user_profiles.is_ads_opt_in,
        user_profiles.is_email_suppressed,
        user_segments.segment_name,
        campaign_scores.response_probability,
        users.email,
        users.phone,
        users.is_erased
    from audience_definitions
    cross join user_profiles
    inner join users
        on user_profiles.user_id = users.user_id
    left join user_segments
        on user_profiles.user_id = user_segments.user_id
    left join campaign_scores
        on
            user_profiles.user_id = campaign_scores.user_id
            and audience_definitions.campaign_id = campaign_scores.campaign_id

),

matching as (

    -- a NULL rule is no condition; a rule on a missing value (no score, never ordered) fails
    select *
    from candidates
    where
        (required_segment_name is null or segment_name = required_segment_name)
        and (
            min_response_probability is null
            or response_probability >= min_response_probability
        )
        and (max_recency_days is null or recency_days <= max_recency_days)
        and (min_recency_days is null or recency_days >= min_recency_days)
        and (min_orders_lifetime is null or count_orders_lifetime >= min_orders_lifetime)

),

eligible as (

    -- consent and suppression as of D; erasure as known now (dim_users), never published
    select *
    from matching
    where
        not is_erased
        and (
            (
                channel = 'email'
                and is_email_opt_in
                and not is_email_suppressed
                and email is not null
            )
            or (
                channel in ('google_ads', 'meta_ads')
                and is_ads_opt_in
                and (email is not null or phone is not null)
            )
        )

),

audience_members as (

    -- an audience with several segments has one definition row per segment: deduplicate
    select distinct
        audience_name,
        channel,
        user_id,
        {{ as_of_date_sql() }} as as_of_date
    from eligible

)

select * from audience_members
