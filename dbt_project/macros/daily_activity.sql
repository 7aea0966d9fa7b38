{#- int_user_daily_activity: the window it keeps and the days an incremental run rebuilds. -#}

{% macro daily_activity_days() -%}
    {#-
        Days int_user_daily_activity keeps (D - 179 .. D): the longest lookback of its readers,
        fct_user_snapshots' 90-day windows before its earliest snapshot, D - 90.
    -#}
    {{ return(180) }}
{%- endmacro %}


{% macro daily_activity_first_day_sql() -%}
    {#- D - 179 as a SQL date: the first day int_user_daily_activity keeps. -#}
    cast({{ dbt.dateadd('day', 1 - daily_activity_days(), as_of_date_sql()) }} as date)
{%- endmacro %}


{% macro daily_activity_categories_key(share_categories) -%}
    {#- Fingerprint of the share categories the count_category_<slug> columns were built with. -#}
    {{ return(local_md5(tojson(share_categories))) }}
{%- endmacro %}


{% macro daily_activity_days_to_build(share_categories) -%}
    {#-
        none: rebuild int_user_daily_activity as of D. A list of 'YYYY-MM-DD': the only days
        whose rows can differ from the table's, which stays as built by the run for D - 1
        (or by an earlier run for D):
        - days of the events that landed in partition D (the only partition new since);
        - every day with an event of a session that one of those events belongs to (its
          start may move: a session counts on the day of its first event);
        - days of events on items listed in partition D (their category was unknown);
        - on a re-run of D, the days it built before (partition D may have been re-landed).
        Users erased since are removed by the post-hook, days before D - 179 by the pre-hook.
        Rebuilds when the table is missing or empty, was last built for another date than D
        or D - 1 (a gap, or a backfill of an earlier date: point in time), or with other
        share categories (a category listed on D adds a column).
    -#}
    {%- if not execute or not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set state = run_query(
        "select cast(max(as_of_date) as varchar), count(distinct categories_key), "
        ~ "min(categories_key) from " ~ this
    ).rows[0] -%}
    {%- set built_for, n_keys, key = state[0], state[1], state[2] -%}
    {%- set day = as_of_date() -%}
    {%- set day_before = (
        modules.datetime.date.fromisoformat(day) - modules.datetime.timedelta(days=1)
    ).isoformat() -%}
    {%- if built_for not in (day, day_before) or n_keys != 1
            or key != daily_activity_categories_key(share_categories) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        with

        landed_events as (
            select user_id, session_id
            from {{ ref('int_events_as_of') }}
            where partition_date = {{ as_of_date_sql() }}
        ),

        touched_sessions as (
            select distinct user_id, session_id
            from landed_events
            where session_id is not null
        ),

        listed_items as (
            select item_id
            from {{ ref('int_items_as_of') }}
            where partition_date = {{ as_of_date_sql() }}
        ),

        changed_days as (
            select cast(events.event_at as date) as activity_date
            from {{ ref('int_events_as_of') }} as events
            where
                events.event_at >= cast({{ daily_activity_first_day_sql() }} as {{ dbt.type_timestamp() }})
                and (
                    events.partition_date = {{ as_of_date_sql() }}
                    or (events.user_id, events.session_id) in (select * from touched_sessions)
                    or events.item_id in (select item_id from listed_items)
                )
            {%- if built_for == day %}
            union all
            select activity_date
            from {{ this }}
            where as_of_date = {{ as_of_date_sql() }}
            {%- endif %}
        )

        select distinct cast(activity_date as varchar)
        from changed_days
        where activity_date >= {{ daily_activity_first_day_sql() }}
        order by 1
    {%- endset -%}
    {{ return(run_query(query).columns[0].values() | list) }}
{%- endmacro %}


{% macro prepare_daily_activity() -%}
    {#-
        Pre-hook of int_user_daily_activity (incremental, appending what its select returns):
        empties the table for a rebuild; otherwise deletes the days the select rebuilds
        (daily_activity_days_to_build) and the days before D - 179.
    -#}
    {%- if is_incremental() -%}
        {%- set days = daily_activity_days_to_build(get_share_categories()) -%}
        delete from {{ this }}
        {%- if days is not none %}
        where
            activity_date < {{ daily_activity_first_day_sql() }}
            {%- for day in days %}
            or activity_date = cast('{{ day }}' as date)
            {%- endfor %}
        {%- endif %}
    {%- endif -%}
{%- endmacro %}
