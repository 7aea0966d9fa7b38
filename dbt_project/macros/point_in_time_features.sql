{#-
    Point-in-time user features, shared by user_profiles (scoring) and fct_campaign_sends
    (training) so both are computed by the same code.

    `spine` names a relation or CTE with one row per spine_key and the columns
        spine_key       unique key of the row (user_id for profiles, send_id for sends)
        user_id
        reference_at    timestamp: only orders/events strictly before it are used
        reference_date  date recency and tenure are measured against
    The macro emits CTEs (pit_*) ending with `point_in_time_features`: one row per spine_key
    with the columns of point_in_time_feature_columns(). Place it inside a `with` clause.

    Windows are [reference_at - N days, reference_at). Sessions count in the window they
    started in. Shares are the fraction of the user's 90-day events per category.

    Three strategies for the event counts, same results (tests/unit/test_dbt_project.py
    checks each against a brute force):
    - daily_activity=true (profiles, snapshots: day-aligned spines, reference_at =
      reference_date + 1 day, reference_date in D - 90 .. D): sums the days
      (reference_date - N, reference_date] of int_user_daily_activity, which a daily run
      maintains incrementally; ~1.8M user-days instead of 12M events at 1M users.
    - timeline (default, any number of spine rows per user, e.g. one per campaign send):
      n log n. Every event inside some spine row's 90-day window, every session and order is
      sorted once per user together with three boundary markers per spine row (reference,
      reference - 30 d, reference - 90 d); a running sum at each marker counts what happened
      strictly before it (markers sort before events at the same instant), and a window count
      is the difference of two markers. No event is ever paired with a spine row.
    - few_rows_per_user=true (campaign sends while they average at most 4 per user, see
      has_few_rows_per_user()): each event is joined
      to its user's spine rows whose 90-day window holds it and aggregated by hash, at most
      rows-per-user x events rows, no sort. Orders always use the timeline.
-#}

{% macro has_few_rows_per_user(model, max_average=4) -%}
    {#-
        True when `model` (a ref'd relation with user_id) holds at most `max_average` rows per
        user on average: point_in_time_features with few_rows_per_user=true then joins fewer
        rows than the timeline sorts (1M users, 1.4 sends each: fct_campaign_sends 6.3 -> 4.0 s).
        Both strategies give the same rows, so this only picks the faster one; false (the
        timeline) when the relation cannot be read (e.g. in dbt unit tests).
    -#}
    {%- if not execute or model.database is none or model.schema is none
            or model.identifier is none -%}
        {#- (a unit test's ref is a fixture CTE, without database or schema) -#}
        {{ return(false) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(model.database, model.schema, model.identifier) -%}
    {%- if relation is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set counts = run_query(
        "select count(*), count(distinct user_id) from " ~ relation
    ) -%}
    {%- set rows, users = counts.rows[0][0], counts.rows[0][1] -%}
    {{ return(rows <= max_average * users) }}
{%- endmacro %}

{% macro point_in_time_feature_columns(share_categories) -%}
    {%- set columns = [
        'tenure_days',
        'recency_days',
        'count_orders_lifetime',
        'monetary_lifetime',
        'average_order_value',
        'count_views_30d',
        'count_carts_30d',
        'count_purchases_30d',
        'count_sessions_30d',
        'count_views_90d',
        'count_carts_90d',
        'count_purchases_90d',
        'count_sessions_90d',
        'conversion_rate_90d',
    ] -%}
    {%- for share_category in share_categories -%}
        {%- do columns.append('share_' ~ share_category.slug) -%}
    {%- endfor -%}
    {{ return(columns) }}
{%- endmacro %}


{% macro point_in_time_features(
    spine, share_categories, few_rows_per_user=false, daily_activity=false
) -%}
{%- set running_total -%}
    over (
        partition by user_id
        order by timeline_at, timeline_rank
        rows between unbounded preceding and current row
    )
{%- endset -%}
{%- set behaviour_flags = ['is_view', 'is_cart', 'is_purchase', 'is_session_start'] -%}
{%- set category_flags = [] -%}
{%- for share_category in share_categories -%}
    {%- do category_flags.append('is_category_' ~ share_category.slug) -%}
{%- endfor -%}
{%- set event_flags = behaviour_flags + ['is_event'] + category_flags -%}
{%- set behaviour_counts = {
    'is_view': 'count_views',
    'is_cart': 'count_carts',
    'is_purchase': 'count_purchases',
    'is_session_start': 'count_sessions',
} -%}

pit_spine as (

    select
        spine_key,
        user_id,
        reference_at,
        reference_date
    from {{ spine }}

),

pit_spine_users as (

    select distinct user_id
    from pit_spine

),

pit_users as (

    select
        users.user_id,
        users.signed_up_at
    from {{ ref('int_users_with_privacy_flags') }} as users
    inner join pit_spine_users
        on users.user_id = pit_spine_users.user_id

),

pit_orders as (

    select
        orders.user_id,
        orders.ordered_at,
        -- spend net of returns (#9): a cancellation's total is negative, it is not an order
        orders.net_order_total as order_total,
        orders.is_cancelled
    from {{ ref('int_orders_with_totals') }} as orders
    inner join pit_spine_users
        on orders.user_id = pit_spine_users.user_id

),

pit_order_timeline as (

    -- markers first: their typed columns give the union its types
    select
        user_id,
        reference_at as timeline_at,
        0 as timeline_rank,
        spine_key,
        0 as is_order,
        cast(0 as {{ dbt.type_numeric() }}) as order_total,
        cast(null as {{ dbt.type_timestamp() }}) as ordered_at
    from pit_spine

    union all

    select
        user_id,
        ordered_at as timeline_at,
        1 as timeline_rank,
        null as spine_key,
        case when is_cancelled then 0 else 1 end as is_order,
        order_total,
        case when is_cancelled then null else ordered_at end as ordered_at
    from pit_orders

),

pit_orders_before as (

    select
        spine_key,
        timeline_rank,
        sum(is_order) {{ running_total }} as count_orders_before,
        -- order totals are exact decimals: the running sum is order-independent
        sum(order_total) {{ running_total }} as monetary_before,
        max(ordered_at) {{ running_total }} as last_ordered_at
    from pit_order_timeline

),

pit_order_features as (

    select
        spine_key,
        count_orders_before,
        monetary_before,
        last_ordered_at
    from pit_orders_before
    where timeline_rank = 0

),

{%- if daily_activity %}

pit_event_windows as (

    -- day-aligned spine rows (reference_at = reference_date + 1 day): a window of N days is
    -- the days (reference_date - N, reference_date] of int_user_daily_activity
    select
        pit_spine.spine_key,
        {%- for days in [30, 90] %}
        {%- for flag in behaviour_flags %}
        sum(
            {%- if days == 90 %}
            activity.{{ behaviour_counts[flag] }}
            {%- else %}
            case
                when activity.activity_date
                    > {{ dbt.dateadd('day', -days, 'pit_spine.reference_date') }}
                    then activity.{{ behaviour_counts[flag] }}
            end
            {%- endif %}
        ) as {{ behaviour_counts[flag] }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        sum(activity.count_events) as is_event_90d{{ "," if share_categories }}
        {%- for share_category in share_categories %}
        sum(activity.count_category_{{ share_category.slug }})
            as is_category_{{ share_category.slug }}_90d{{ "," if not loop.last }}
        {%- endfor %}
    from pit_spine
    inner join {{ ref('int_user_daily_activity') }} as activity
        on
            pit_spine.user_id = activity.user_id
            and activity.activity_date > {{ dbt.dateadd('day', -90, 'pit_spine.reference_date') }}
            and activity.activity_date <= pit_spine.reference_date
    group by pit_spine.spine_key

),

{%- else %}

pit_event_bounds as (

    -- events count only inside some spine row's 90-day window: one before every window
    -- adds the same to each marker's running total (a window is a difference of two), one
    -- after every reference comes after all markers. Skipping them keeps the sort to the
    -- last 90 days whatever the length of the shop's history.
    select
        min({{ dbt.dateadd('day', -90, 'reference_at') }}) as first_needed_at,
        max(reference_at) as last_needed_before
    from pit_spine

),

{{ point_in_time_activity(share_categories, 'pit_event_bounds', 'pit_spine_users') }},

{%- if not few_rows_per_user %}

pit_event_timeline as (

    -- markers (a boundary code instead of a name: narrow rows) then activity
    {%- for days_back in [0, 30, 90] %}

    select
        user_id,
        {% if days_back == 0 -%}
        reference_at as timeline_at,
        {%- else -%}
        {{ dbt.dateadd('day', -days_back, 'reference_at') }} as timeline_at,
        {%- endif %}
        cast(0 as {{ type_flag() }}) as timeline_rank,
        spine_key,
        -- 0 = reference, 1 = reference - 30 d, 2 = reference - 90 d
        cast({{ loop.index0 }} as {{ type_flag() }}) as boundary,
        {%- for flag in event_flags %}
        cast(0 as {{ type_flag() }}) as {{ flag }}{{ "," if not loop.last }}
        {%- endfor %}
    from pit_spine

    union all
    {%- endfor %}

    select
        user_id,
        timeline_at,
        timeline_rank,
        null as spine_key,
        null as boundary,
        {%- for flag in event_flags %}
        {{ flag }}{{ "," if not loop.last }}
        {%- endfor %}
    from pit_activity

),

pit_events_before as (

    select
        spine_key,
        boundary,
        timeline_rank,
        {%- for flag in event_flags %}
        sum({{ flag }}) {{ running_total }} as {{ flag }}_before{{ "," if not loop.last }}
        {%- endfor %}
    from pit_event_timeline

),

pit_event_windows as (

    -- count in [reference - N days, reference) = count before reference - count before start
    select
        spine_key,
        {%- for days in [30, 90] %}
        {%- for flag in behaviour_flags %}
        sum(
            case boundary
                when 0 then {{ flag }}_before
                when {{ 1 if days == 30 else 2 }} then -{{ flag }}_before
                else 0
            end
        ) as {{ behaviour_counts[flag] }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        {%- for flag in ['is_event'] + category_flags %}
        sum(
            case boundary
                when 0 then {{ flag }}_before
                when 2 then -{{ flag }}_before
                else 0
            end
        ) as {{ flag }}_90d{{ "," if not loop.last }}
        {%- endfor %}
    from pit_events_before
    where timeline_rank = 0
    group by spine_key

),

{%- else %}

pit_event_windows as (

    -- few spine rows per user (campaign sends while they average at most 4): join each event
    -- to the user's rows whose 90-day window holds it and aggregate, at most rows x events
    select
        pit_spine.spine_key,
        {%- for days in [30, 90] %}
        {%- for flag in behaviour_flags %}
        count(
            case
                when pit_activity.{{ flag }} = 1
                    and pit_activity.timeline_at >= {{ dbt.dateadd('day', -days, 'pit_spine.reference_at') }}
                    then 1
            end
        ) as {{ behaviour_counts[flag] }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        {%- for flag in ['is_event'] + category_flags %}
        count(case when pit_activity.{{ flag }} = 1 then 1 end)
            as {{ flag }}_90d{{ "," if not loop.last }}
        {%- endfor %}
    from pit_spine
    inner join pit_activity
        on
            pit_spine.user_id = pit_activity.user_id
            and pit_activity.timeline_at >= {{ dbt.dateadd('day', -90, 'pit_spine.reference_at') }}
            and pit_activity.timeline_at < pit_spine.reference_at
    group by pit_spine.spine_key

),

{%- endif %}

{%- endif %}

point_in_time_features as (

    select
        pit_spine.spine_key,
        {{ dbt.datediff(
            'cast(pit_users.signed_up_at as date)', 'pit_spine.reference_date', 'day'
        ) }} as tenure_days,
        {{ dbt.datediff(
            'cast(pit_order_features.last_ordered_at as date)', 'pit_spine.reference_date', 'day'
        ) }} as recency_days,
        cast(
            coalesce(pit_order_features.count_orders_before, 0) as {{ dbt.type_bigint() }}
        ) as count_orders_lifetime,
        cast(
            coalesce(pit_order_features.monetary_before, 0) as {{ type_double() }}
        ) as monetary_lifetime,
        case
            when pit_order_features.count_orders_before > 0
                then cast(pit_order_features.monetary_before as {{ type_double() }})
                    / pit_order_features.count_orders_before
            else 0
        end as average_order_value,
        {%- for days in [30, 90] %}
        {%- for flag in behaviour_flags %}
        cast(
            coalesce(pit_event_windows.{{ behaviour_counts[flag] }}_{{ days }}d, 0)
            as {{ dbt.type_bigint() }}
        ) as {{ behaviour_counts[flag] }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        case
            when pit_event_windows.count_views_90d > 0
                then cast(pit_event_windows.count_purchases_90d as {{ type_double() }})
                    / pit_event_windows.count_views_90d
            else 0
        end as conversion_rate_90d{{ "," if share_categories }}
        {%- for share_category in share_categories %}
        case
            when pit_event_windows.is_event_90d > 0
                then cast(
                    pit_event_windows.is_category_{{ share_category.slug }}_90d
                    as {{ type_double() }}
                ) / pit_event_windows.is_event_90d
            else 0
        end as share_{{ share_category.slug }}{{ "," if not loop.last }}
        {%- endfor %}
    from pit_spine
    left join pit_users
        on pit_spine.user_id = pit_users.user_id
    left join pit_order_features
        on pit_spine.spine_key = pit_order_features.spine_key
    left join pit_event_windows
        on pit_spine.spine_key = pit_event_windows.spine_key

)
{%- endmacro %}
