{% macro point_in_time_activity(share_categories, bounds, users=none, days=none) -%}
{#-
    CTEs pit_events, pit_session_starts and pit_activity: one row per event or session start
    in [first_needed_at, last_needed_before) of the one-row relation `bounds`, with TINYINT
    flags (is_view, is_cart, is_purchase, is_session_start, is_event, is_category_<slug>).
    A session starts at the first of *all* its events known by D.
    `users` (a relation with user_id) keeps only those users; none keeps every user.
    `days` (a list of 'YYYY-MM-DD' inside the bounds) keeps only events and session starts on
    those days, reading only the sessions with an event on one of them; none keeps all days.
    Shared by point_in_time_features and int_user_daily_activity.
-#}
{%- set on_days -%}
    ({%- for day in days or [] -%}
        cast('{{ day }}' as date){{ ", " if not loop.last }}
    {%- else -%}
        null
    {%- endfor -%})
{%- endset -%}
{%- set event_flags = ['is_view', 'is_cart', 'is_purchase', 'is_session_start', 'is_event'] -%}
{%- for share_category in share_categories -%}
    {%- do event_flags.append('is_category_' ~ share_category.slug) -%}
{%- endfor -%}

pit_events as (

    select
        events.user_id,
        events.event_at,
        events.event_type,
        items.category
    from {{ ref('int_events_as_of') }} as events
    {%- if users is not none %}
    inner join {{ users }}
        on events.user_id = {{ users }}.user_id
    {%- endif %}
    cross join {{ bounds }}
    left join {{ ref('int_items_as_of') }} as items
        on events.item_id = items.item_id
    where
        events.event_at >= {{ bounds }}.first_needed_at
        and events.event_at < {{ bounds }}.last_needed_before
        {%- if days is not none %}
        and cast(events.event_at as date) in {{ on_days }}
        {%- endif %}

),

pit_session_starts as (

    -- a session's start is the first of *all* its events, so only the upper bound filters
    -- events; sessions that started before any window are dropped after grouping
    select
        events.user_id,
        min(events.event_at) as session_started_at
    from {{ ref('int_events_as_of') }} as events
    cross join {{ bounds }}
    where
        events.session_id is not null
        and events.event_at < {{ bounds }}.last_needed_before
        {%- if users is not none %}
        and events.user_id in (select user_id from {{ users }})
        {%- endif %}
        {%- if days is not none %}
        and (events.user_id, events.session_id) in (
            select
                day_events.user_id,
                day_events.session_id
            from {{ ref('int_events_as_of') }} as day_events
            cross join {{ bounds }} as day_bounds
            where
                day_events.event_at >= day_bounds.first_needed_at
                and day_events.event_at < day_bounds.last_needed_before
                and cast(day_events.event_at as date) in {{ on_days }}
        )
        {%- endif %}
    group by events.user_id, events.session_id
    having
        min(events.event_at) >= min({{ bounds }}.first_needed_at)
        {%- if days is not none %}
        and cast(min(events.event_at) as date) in {{ on_days }}
        {%- endif %}

),

pit_activity as (

    -- one row per event or session start, with TINYINT flags (narrow rows: this is the
    -- widest input of the project)
    select
        user_id,
        event_at as timeline_at,
        cast(1 as {{ type_flag() }}) as timeline_rank,
        cast(coalesce(event_type = 'view', false) as {{ type_flag() }}) as is_view,
        cast(coalesce(event_type = 'cart', false) as {{ type_flag() }}) as is_cart,
        cast(coalesce(event_type = 'purchase', false) as {{ type_flag() }}) as is_purchase,
        cast(0 as {{ type_flag() }}) as is_session_start,
        cast(1 as {{ type_flag() }}) as is_event{{ "," if share_categories }}
        {%- for share_category in share_categories %}
        cast(
            coalesce(category in {{ sql_string_list(share_category.categories) }}, false)
            as {{ type_flag() }}
        ) as is_category_{{ share_category.slug }}{{ "," if not loop.last }}
        {%- endfor %}
    from pit_events

    union all

    select
        user_id,
        session_started_at as timeline_at,
        cast(1 as {{ type_flag() }}) as timeline_rank,
        {%- for flag in event_flags %}
        cast({{ 1 if flag == 'is_session_start' else 0 }} as {{ type_flag() }})
            as {{ flag }}{{ "," if not loop.last }}
        {%- endfor %}
    from pit_session_starts

)
{%- endmacro %}
