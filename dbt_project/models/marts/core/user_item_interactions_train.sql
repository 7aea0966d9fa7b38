{{
    config(
        materialized='incremental',
        on_schema_change='sync_all_columns',
        pre_hook="{{ prepare_training_mart('int_users_with_privacy_flags', days_before_as_of=evaluation_holdout_days()) }}",
    )
}}
-- The training side of the recommendations' temporal hold-out: the same strengths as
-- user_item_interactions, but as of T = D - evaluation_holdout_days (default D - 7), from
-- events before T + 1 day only. Events of T+1..D are the test window. Erasure follows D.
{%- set train_date_sql = dbt.dateadd('day', -evaluation_holdout_days(), as_of_date_sql()) %}
{%- if keep_training_mart(days_before_as_of=evaluation_holdout_days()) %}
-- refit cadence: D reuses item neighbours fitted (and evaluated) for var training_marts_from
{{ kept_training_rows() }}
{%- else %}

with

events as (

    select * from {{ ref('int_events_as_of') }}

),

users as (

    select * from {{ ref('int_users_with_privacy_flags') }}

),

train_events as (

    select *
    from events
    where event_at < cast({{ dbt.dateadd('day', 1, train_date_sql) }} as {{ dbt.type_timestamp() }})

),

user_item_interactions_train as (

    {{ user_item_interactions_as_of('train_events', 'users', 'cast(' ~ train_date_sql ~ ' as date)') }}

)

select * from user_item_interactions_train
{%- endif %}
