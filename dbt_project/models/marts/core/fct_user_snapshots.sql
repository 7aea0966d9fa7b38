{{
    config(
        materialized='incremental',
        on_schema_change='sync_all_columns',
        pre_hook="{{ prepare_training_mart('int_users_with_privacy_flags') }}",
    )
}}
{#-
    Point-in-time training rows for the propensity models without campaign history
    (purchase in the next 30 days) and for ml.user_predictions (churn, 90-day spend):
    one row per training user and snapshot date T in {D - 30, D - 60, D - 90}, with the
    user_profiles features as of the end of T (macro point_in_time_features) and labels from
    the user's orders after T: [T + 1 day, T + 1 day + N days), all of which lies on or before D
    (cancellations are no orders; their totals net out of the spend).
    Training users: at most var training_max_users of the users not erased by D, a fixed
    pseudo-random subset (smallest md5 of the user id), so the mart and the fits on it cost
    the same for a million users as for that many; every user when there are fewer.
-#}
{%- set share_categories = get_share_categories() %}
{%- set snapshot_days_back = [30, 60, 90] %}
{%- if keep_training_mart() %}
-- refit cadence: D reuses models fitted for var training_marts_from, so their training rows stay
{{ kept_training_rows() }}
{%- else %}

with

users as (

    select * from {{ ref('int_users_with_privacy_flags') }}

),

orders as (

    select * from {{ ref('int_orders_with_totals') }}

),

training_users as (

    -- md5 of the id: the same users every day (a user joins or leaves only by signing up,
    -- being erased or being displaced by a new user with a smaller hash)
    select user_id
    from users
    where not is_erased
    order by md5_number(cast(user_id as varchar)), user_id
    limit {{ var('training_max_users') }}

),

snapshot_dates as (

    {%- for days_back in snapshot_days_back %}
    select
        {{ loop.index }} as snapshot_index,
        {{ days_back }} as days_before_as_of,
        cast({{ dbt.dateadd('day', -days_back, as_of_date_sql()) }} as date) as snapshot_date
    {{ "union all" if not loop.last }}
    {%- endfor %}

),

spine as (

    -- users signed up by the end of T and not erased by D, observed at the end of T
    select
        -- an integer key (user, snapshot 1..3): joins and the timeline sort stay narrow
        users.user_id * 4 + snapshot_dates.snapshot_index as spine_key,
        users.user_id,
        {{ dbt.dateadd('day', 1, 'snapshot_dates.snapshot_date') }} as reference_at,
        snapshot_dates.snapshot_date as reference_date,
        snapshot_dates.days_before_as_of
    from users
    inner join training_users
        on users.user_id = training_users.user_id
    cross join snapshot_dates
    where
        users.signed_up_at < {{ dbt.dateadd('day', 1, 'snapshot_dates.snapshot_date') }}

),

{{ point_in_time_features('spine', share_categories, daily_activity=true) }},

orders_after as (

    -- orders in the 90 days after T, each tagged with its day offset
    select
        spine.spine_key,
        orders.net_order_total,
        orders.is_cancelled,
        orders.ordered_at < {{ dbt.dateadd('day', 30, 'spine.reference_at') }} as is_within_30d
    from spine
    inner join orders
        on
            spine.user_id = orders.user_id
            and orders.ordered_at >= spine.reference_at
            and orders.ordered_at < {{ dbt.dateadd('day', 90, 'spine.reference_at') }}

),

labels as (

    -- a cancellation is no purchase, and its total counts against the spend (as in the
    -- features); returns of orders placed before T cannot make the spend negative
    select
        spine_key,
        sum(case when is_within_30d and not is_cancelled then 1 else 0 end)
            as count_orders_next_30d,
        sum(case when is_cancelled then 0 else 1 end) as count_orders_next_90d,
        greatest(sum(net_order_total), 0) as spend_next_90d
    from orders_after
    group by spine_key

),

user_snapshots as (

    select
        spine.user_id,
        spine.reference_date as snapshot_date,
        {{ as_of_date_sql() }} as as_of_date,
        users.country,
        {%- for column in point_in_time_feature_columns(share_categories) %}
        point_in_time_features.{{ column }},
        {%- endfor %}
        coalesce(labels.count_orders_next_30d, 0) > 0 as purchased_next_30d,
        -- the 90-day labels are known only when the window closed by D
        case
            when spine.days_before_as_of >= 90
                then coalesce(labels.count_orders_next_90d, 0) = 0
        end as churned_next_90d,
        case
            when spine.days_before_as_of >= 90
                then cast(coalesce(labels.spend_next_90d, 0) as {{ type_double() }})
        end as spend_next_90d
    from spine
    inner join users
        on spine.user_id = users.user_id
    inner join point_in_time_features
        on spine.spine_key = point_in_time_features.spine_key
    left join labels
        on spine.spine_key = labels.spine_key

)

select * from user_snapshots
{%- endif %}
