{{
    config(
        materialized='incremental',
        on_schema_change='sync_all_columns',
        pre_hook="{{ prepare_campaign_sends() }}",
    )
}}
-- depends_on: {{ ref('int_orders_as_of') }}, {{ ref('int_order_lines_as_of') }}
-- depends_on: {{ ref('int_users_as_of') }}, {{ ref('int_items_as_of') }}
-- depends_on: {{ ref('int_events_as_of') }}
{#- (read by campaign_sends_changed_sql, which parsing does not render) #}
{%- set share_categories = get_share_categories() %}
{%- set sends_source = ref('int_campaign_sends_as_of') %}
{%- set extends_day_before = campaign_sends_extends_day_before(share_categories) %}
{%- if keep_training_mart() %}
-- refit cadence: D reuses models fitted for var training_marts_from, so their training rows stay
{{ kept_training_rows() }}
{%- else %}

with

sends as (

    select * from {{ ref('int_campaign_sends_as_of') }}

),

campaigns as (

    select * from {{ ref('int_campaigns_as_of') }}

),

responses as (

    select * from {{ ref('int_campaign_responses_as_of') }}

),

users as (

    select * from {{ ref('int_users_with_privacy_flags') }}

),

sends_with_windows as (

    select
        sends.send_id,
        sends.campaign_id,
        sends.user_id,
        campaigns.channel,
        sends.sent_at,
        {{ dbt.dateadd('day', 'campaigns.response_window_days', 'sends.sent_at') }}
            as response_window_closes_at,
        sends.is_control
    from sends
    inner join campaigns
        on sends.campaign_id = campaigns.campaign_id
    inner join users
        on sends.user_id = users.user_id
    where not users.is_erased

),

closed_sends as (

    -- only sends whose outcome is final by the end of D can be labelled
    select *
    from sends_with_windows
    where
        response_window_closes_at <= {{ as_of_cutoff_sql() }}
        {%- if extends_day_before %}
        -- the run for D - 1 built the rest (macro campaign_sends_extends_day_before)
        and {{ campaign_sends_changed_sql() }}
        {%- endif %}

),

first_responses as (

    select
        responses.send_id,
        min(responses.responded_at) as first_responded_at
    from responses
    inner join closed_sends
        on responses.send_id = closed_sends.send_id
    where
        responses.responded_at >= closed_sends.sent_at
        and responses.responded_at < closed_sends.response_window_closes_at
    group by responses.send_id

),

spine as (

    -- features as of the moment of sending: what a score computed then could have used
    select
        send_id as spine_key,
        user_id,
        sent_at as reference_at,
        cast(sent_at as date) as reference_date
    from closed_sends

),

{#- few sends per user: join events to sends; many: the sorted timeline (same rows) -#}
{{ point_in_time_features(
    'spine', share_categories, few_rows_per_user=has_few_rows_per_user(sends_source)
) }},

campaign_sends as (

    select
        closed_sends.send_id,
        closed_sends.campaign_id,
        closed_sends.user_id,
        closed_sends.channel,
        closed_sends.sent_at,
        closed_sends.response_window_closes_at,
        closed_sends.is_control,
        first_responses.send_id is not null as has_responded,
        {{ as_of_date_sql() }} as as_of_date,
        users.country,
        {%- for column in point_in_time_feature_columns(share_categories) %}
        point_in_time_features.{{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from closed_sends
    inner join users
        on closed_sends.user_id = users.user_id
    inner join point_in_time_features
        on closed_sends.send_id = point_in_time_features.spine_key
    left join first_responses
        on closed_sends.send_id = first_responses.send_id

)

select * from campaign_sends
{%- endif %}
