{{
    config(
        materialized='incremental',
        on_schema_change='sync_all_columns',
        pre_hook="{{ prepare_daily_activity() }}",
        post_hook="{{ delete_erased_users('int_users_with_privacy_flags') }}",
    )
}}
{#-
    One row per user and day of the last daily_activity_days() days up to D with any event or
    session start: the daily counts the point-in-time features of user_profiles and
    fct_user_snapshots sum over their 30- and 90-day windows (macro point_in_time_features,
    daily_activity=true). Events are aggregated once per day instead of once per spine row,
    and a daily run rebuilds only the days that can have changed since the run for D - 1
    (macro daily_activity_days_to_build; anything else rebuilds every day as of D).
    A session counts on the day it started (the first of all its events known by D); sessions
    that started before the first day are left out, as in the windows. Users erased by D have
    no rows.
-#}
{%- set share_categories = get_share_categories() %}
{%- set days = daily_activity_days_to_build(share_categories) %}

with

pit_event_bounds as (

    select
        {%- if days %}
        cast('{{ days | min }}' as {{ dbt.type_timestamp() }}) as first_needed_at,
        cast(
            {{ dbt.dateadd('day', 1, "cast('" ~ (days | max) ~ "' as date)") }}
            as {{ dbt.type_timestamp() }}
        ) as last_needed_before
        {%- else %}
        cast({{ daily_activity_first_day_sql() }} as {{ dbt.type_timestamp() }})
            as first_needed_at,
        {{ as_of_cutoff_sql() }} as last_needed_before
        {%- endif %}

),

{{ point_in_time_activity(share_categories, 'pit_event_bounds', days=days) }},

daily_activity as (

    select
        user_id,
        cast(timeline_at as date) as activity_date,
        cast(count(case when is_view = 1 then 1 end) as integer) as count_views,
        cast(count(case when is_cart = 1 then 1 end) as integer) as count_carts,
        cast(count(case when is_purchase = 1 then 1 end) as integer) as count_purchases,
        cast(count(case when is_session_start = 1 then 1 end) as integer) as count_sessions,
        cast(count(case when is_event = 1 then 1 end) as integer) as count_events,
        {%- for share_category in share_categories %}
        cast(
            count(case when is_category_{{ share_category.slug }} = 1 then 1 end) as integer
        ) as count_category_{{ share_category.slug }},
        {%- endfor %}
        {{ as_of_date_sql() }} as as_of_date,
        '{{ daily_activity_categories_key(share_categories) }}' as categories_key
    from pit_activity
    group by user_id, cast(timeline_at as date)

),

erased_users as (

    select user_id
    from {{ ref('int_users_with_privacy_flags') }}
    where is_erased

)

select *
from daily_activity
where user_id not in (select user_id from erased_users)
