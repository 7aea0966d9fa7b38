{#- Hooks of the incremental marts partitioned by as_of_date. -#}

{% macro delete_as_of_date_partition() -%}
    {#-
        Pre-hook: empty D's partition before delete+insert, so a re-run that now yields no
        rows for D still replaces them (delete+insert alone only deletes keys it inserts).
    -#}
    {%- if is_incremental() -%}
        delete from {{ this }} where as_of_date = {{ as_of_date_sql() }}
    {%- endif -%}
{%- endmacro %}


{% macro delete_erased_users(users_model) -%}
    {#-
        Post-hook: erasure is permanent, so rows of users erased by D are also removed from
        the partitions of earlier dates (D's own partition never contains them).
        users_model: a model the hooked model already refs, with user_id and is_erased.
    -#}
    delete from {{ this }}
    where user_id in (
        select user_id
        from {{ ref(users_model) }}
        where is_erased
    )
{%- endmacro %}


{% macro keep_training_mart(days_before_as_of=0) -%}
    {#-
        True when this training mart (fct_campaign_sends, fct_user_snapshots,
        user_item_interactions_train) may be kept as built by an earlier run instead of
        rebuilt for D: under a model refit cadence (MARKETING_MODEL_REFIT_DAYS > 1) the DAG's
        plan_models task names the date A whose fitted models D reuses (so D fits nothing on
        these marts), and the table was built for one date in [A, D] (point in time: never
        after D). A comes from var `training_marts_from` or, without it, from the environment
        variable MARKETING_TRAINING_MARTS_FROM (what the DAG sets; read at run time only, like
        MARKETING_AS_OF_DATE, so the saved parse stays valid). Anything else (A unset, table
        missing or built for a date outside [A, D], A not before D, --full-refresh) rebuilds
        as of D.
        days_before_as_of: the mart's as_of_date column is the run date minus this many days
        (the hold-out's training side is stamped D - evaluation_holdout_days).
    -#}
    {%- if not execute or not is_incremental() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set kept_from = var('training_marts_from', none) -%}
    {%- if kept_from is none -%}
        {%- set kept_from = env_var('MARKETING_TRAINING_MARTS_FROM', '') -%}
    {%- endif -%}
    {%- set kept_from = kept_from | string | trim -%}
    {%- if kept_from in ('', 'None') -%}
        {{ return(false) }}
    {%- endif -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', kept_from) -%}
        {{ exceptions.raise_compiler_error(
            "var 'training_marts_from' must be a date as YYYY-MM-DD or empty, got '"
            ~ kept_from ~ "'"
        ) }}
    {%- endif -%}
    {%- if kept_from >= as_of_date() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {%- if relation is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set built = run_query(
        "select cast(min(as_of_date) as varchar), cast(max(as_of_date) as varchar) from "
        ~ relation
    ) -%}
    {%- set low, high = built.rows[0][0], built.rows[0][1] -%}
    {%- set shift = modules.datetime.timedelta(days=days_before_as_of | int) -%}
    {%- set earliest = (modules.datetime.date.fromisoformat(kept_from) - shift).isoformat() -%}
    {%- set latest = (modules.datetime.date.fromisoformat(as_of_date()) - shift).isoformat() -%}
    {{ return(low is not none and low == high and earliest <= low <= latest) }}
{%- endmacro %}


{% macro kept_training_rows() -%}
    {#-
        Select of a kept training mart: no new rows, so the table stays as it is (minus the
        users erased by D, whom the pre-hook prepare_training_mart deleted) instead of
        being copied into a new one.
    -#}
    select * from {{ this }} where false
{%- endmacro %}


{% macro prepare_training_mart(users_model, days_before_as_of=0) -%}
    {#-
        Pre-hook of the training marts (incremental, appending what their select returns):
        a kept mart (keep_training_mart) loses the rows of users erased by D (erasure
        reaches kept marts too); a mart rebuilt for D is emptied, as its select returns
        every row.
        users_model: a model the mart refs, with user_id and is_erased.
    -#}
    {%- if is_incremental() -%}
        {%- if keep_training_mart(days_before_as_of) -%}
            delete from {{ this }}
            where user_id in (
                select user_id
                from {{ ref(users_model) }}
                where is_erased
            )
        {%- else -%}
            delete from {{ this }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
