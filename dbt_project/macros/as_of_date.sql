{#-
    The run date D and the point-in-time bounds derived from it.

    A run for D sees rows with timestamps < D + 1 day that landed in partitions <= D.

    D comes from `--vars '{as_of_date: YYYY-MM-DD}'` or, without that var, from the
    environment variable MARKETING_AS_OF_DATE. The scheduled runs use the environment
    variable: dbt re-parses the whole project whenever --vars change (2.5 s at every run), but
    D is only read at run time (never while parsing), so a saved parse stays valid across dates.
-#}

{% macro as_of_date() -%}
    {#- The validated run date as 'YYYY-MM-DD'; raises a compiler error if missing/invalid. -#}
    {%- if not execute -%}
        {#- Parsing (dbt parse / ls) renders models without running them: no date needed,
            and reading the environment here would tie the saved parse to one date. -#}
        {{ return('1970-01-01') }}
    {%- endif -%}
    {%- set value = var('as_of_date', none) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {%- set value = env_var('MARKETING_AS_OF_DATE', '') -%}
    {%- endif -%}
    {%- if (value | string | trim) == '' -%}
        {{ exceptions.raise_compiler_error(
            "var 'as_of_date' is required: pass the run date D as "
            ~ "--vars '{as_of_date: YYYY-MM-DD}' or set MARKETING_AS_OF_DATE"
        ) }}
    {%- endif -%}
    {#- YAML turns an unquoted 2024-01-31 into a date: its str() is already ISO. -#}
    {%- set text = value | string | trim -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', text) -%}
        {{ exceptions.raise_compiler_error(
            "var 'as_of_date' must be a date as YYYY-MM-DD, got '" ~ text ~ "'"
        ) }}
    {%- endif -%}
    {%- set year = text[0:4] | int -%}
    {%- set month = text[5:7] | int -%}
    {%- set day = text[8:10] | int -%}
    {%- if month < 1 or month > 12 -%}
        {{ exceptions.raise_compiler_error(
            "var 'as_of_date' must be a date as YYYY-MM-DD, got '" ~ text ~ "' (month)"
        ) }}
    {%- endif -%}
    {%- set first_of_next_month = modules.datetime.date(
        year + (month // 12), (month % 12) + 1, 1
    ) -%}
    {%- set days_in_month = (first_of_next_month - modules.datetime.timedelta(days=1)).day -%}
    {%- if year < 1 or day < 1 or day > days_in_month -%}
        {{ exceptions.raise_compiler_error(
            "var 'as_of_date' must be a date as YYYY-MM-DD, got '" ~ text ~ "' (day)"
        ) }}
    {%- endif -%}
    {{ return(text) }}
{%- endmacro %}


{% macro as_of_date_sql() -%}
    {#- D as a SQL date literal. -#}
    cast('{{ as_of_date() }}' as date)
{%- endmacro %}


{% macro as_of_cutoff_sql() -%}
    {#- D + 1 day at 00:00 as a SQL timestamp: the exclusive upper bound of what D can see. -#}
    cast({{ dbt.dateadd('day', 1, as_of_date_sql()) }} as {{ dbt.type_timestamp() }})
{%- endmacro %}


{% macro known_as_of(timestamp_column=none, partition_column='partition_date') -%}
    {#- Where-clause keeping the rows a run for D may read. -#}
    {{ partition_column }} <= {{ as_of_date_sql() }}
    {%- if timestamp_column is not none %}
        and {{ timestamp_column }} < {{ as_of_cutoff_sql() }}
    {%- endif -%}
{%- endmacro %}
