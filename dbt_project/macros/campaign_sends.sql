{#- fct_campaign_sends: when a daily run may keep the rows of the run for D - 1. -#}

{% macro campaign_sends_extends_day_before(share_categories) -%}
    {#-
        True when fct_campaign_sends may keep the rows the run for D - 1 built and rebuild only
        the sends whose row can differ (campaign_sends_changed_sql): the table exists, every
        row was built for D - 1, and its share_<category> columns are D's. Anything else (a
        gap, a re-run of D, a backfill of an earlier date, a new category, --full-refresh, a
        mart kept under a refit cadence) rebuilds every send as of D.
    -#}
    {%- if not execute or not is_incremental() or keep_training_mart() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set day_before = (
        modules.datetime.date.fromisoformat(as_of_date()) - modules.datetime.timedelta(days=1)
    ).isoformat() -%}
    {%- set built = run_query(
        "select cast(min(as_of_date) as varchar), cast(max(as_of_date) as varchar) from "
        ~ this
    ).rows[0] -%}
    {%- if built[0] != day_before or built[1] != day_before -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set wanted, have = [], [] -%}
    {%- for column in point_in_time_feature_columns(share_categories) -%}
        {%- if column.startswith('share_') %}{% do wanted.append(column) %}{% endif -%}
    {%- endfor -%}
    {%- for column in adapter.get_columns_in_relation(this) -%}
        {%- if column.name.startswith('share_') %}{% do have.append(column.name) %}{% endif -%}
    {%- endfor -%}
    {{ return((wanted | sort) == (have | sort)) }}
{%- endmacro %}


{% macro campaign_sends_changed_sql() -%}
    {#-
        Where-clause over a relation with user_id, campaign_id and response_window_closes_at:
        the sends whose row as of D can differ from the row the run for D - 1 built. Only
        partition D is new since then (a re-landed or backfilled partition rebuilds
        everything), so these are:
        - sends whose response window closed during D (new rows);
        - every send of a user with a row landed on D in events, orders, order lines, users
          or campaign sends, or with a response landed on D (features as of the send, the
          country, the label);
        - every send of a user with an event on an item listed on D (its category was
          unknown);
        - every send of a campaign landed on D (channel, response window).
        Users erased by D have no rows either way.
    -#}
    (
        response_window_closes_at > cast({{ as_of_date_sql() }} as {{ dbt.type_timestamp() }})
        or campaign_id in (
            select campaign_id
            from {{ ref('int_campaigns_as_of') }}
            where partition_date = {{ as_of_date_sql() }}
        )
        or user_id in (
            select user_id
            from {{ ref('int_events_as_of') }}
            where
                partition_date = {{ as_of_date_sql() }}
                or item_id in (
                    select item_id
                    from {{ ref('int_items_as_of') }}
                    where partition_date = {{ as_of_date_sql() }}
                )
            union all
            select user_id
            from {{ ref('int_orders_as_of') }}
            where
                partition_date = {{ as_of_date_sql() }}
                or order_id in (
                    select order_id
                    from {{ ref('int_order_lines_as_of') }}
                    where partition_date = {{ as_of_date_sql() }}
                )
            union all
            select user_id
            from {{ ref('int_users_as_of') }}
            where partition_date = {{ as_of_date_sql() }}
            union all
            select user_id
            from {{ ref('int_campaign_sends_as_of') }}
            where
                partition_date = {{ as_of_date_sql() }}
                or send_id in (
                    select send_id
                    from {{ ref('int_campaign_responses_as_of') }}
                    where partition_date = {{ as_of_date_sql() }}
                )
        )
    )
{%- endmacro %}


{% macro prepare_campaign_sends() -%}
    {#-
        Pre-hook of fct_campaign_sends (incremental, appending what its select returns): a run
        extending the run for D - 1 (campaign_sends_extends_day_before) deletes the users
        erased by D (delete_erased_users) and the sends its select rebuilds, and stamps the
        kept rows with D; otherwise prepare_training_mart (a kept mart loses the erased
        users, a rebuilt one every row).
    -#}
    {%- if campaign_sends_extends_day_before(get_share_categories()) -%}
        {{ delete_erased_users('int_users_with_privacy_flags') }};
        delete from {{ this }} where {{ campaign_sends_changed_sql() }};
        update {{ this }} set as_of_date = {{ as_of_date_sql() }}
    {%- else -%}
        {{ prepare_training_mart('int_users_with_privacy_flags') }}
    {%- endif -%}
{%- endmacro %}
