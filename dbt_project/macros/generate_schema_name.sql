{#-
    Use a model's custom schema as is (`+schema: staging` -> schema `staging`) instead of
    dbt's default `<target schema>_<custom schema>`: the contract names schemas exactly.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
