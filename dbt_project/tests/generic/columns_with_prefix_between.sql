{#-
    Fails on every row where a column whose name starts with `prefix` lies outside
    [min_value, max_value]. For columns created at run time (user_profiles' share_<category>).
    NULL passes: a share column is NULL on rows older than its category.
-#}
{% test columns_with_prefix_between(model, prefix, min_value, max_value) %}

{%- set columns = [] -%}
{%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- if column.name.lower().startswith(prefix) -%}
            {%- do columns.append(column.name) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif -%}

{%- if columns | length == 0 %}
select * from {{ model }} where 1 = 0
{%- else %}
select *
from {{ model }}
where
    {%- for column in columns %}
    {{ "or " if not loop.first }}{{ adapter.quote(column) }} < {{ min_value }}
    or {{ adapter.quote(column) }} > {{ max_value }}
    {%- endfor %}
{%- endif %}

{% endtest %}
