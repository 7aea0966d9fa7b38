{% macro type_double() -%}
    {#- 8-byte float (dbt.type_float() is a 4-byte REAL on DuckDB). -#}
    {{ return(adapter.dispatch('type_double', 'marketing')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    {{ return('double precision') }}
{%- endmacro %}

{% macro bigquery__type_double() -%}
    {{ return('float64') }}
{%- endmacro %}

{% macro spark__type_double() -%}
    {{ return('double') }}
{%- endmacro %}

{% macro type_flag() -%}
    {#- The narrowest integer type, for 0/1 flags and small codes of wide timelines. -#}
    {{ return(adapter.dispatch('type_flag', 'marketing')()) }}
{%- endmacro %}

{% macro default__type_flag() -%}
    {{ return('smallint') }}
{%- endmacro %}

{% macro duckdb__type_flag() -%}
    {{ return('tinyint') }}
{%- endmacro %}

{% macro bigquery__type_flag() -%}
    {{ return('int64') }}
{%- endmacro %}
