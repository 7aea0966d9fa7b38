{#- is_cancelled / is_guest came with source mappings (#9): warehouses landed before them
    lack the columns, so they default to false there. -#}
{%- set source_columns = [] -%}
{%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(source('shop', 'orders')) -%}
        {%- do source_columns.append(column.name | lower) -%}
    {%- endfor -%}
{%- endif -%}

with

source as (

    select * from {{ source('shop', 'orders') }}

),

renamed as (

    select
        -- ids
        cast(order_id as {{ dbt.type_bigint() }}) as order_id,
        cast(user_id as {{ dbt.type_bigint() }}) as user_id,

        -- timestamps
        cast(ordered_at as {{ dbt.type_timestamp() }}) as ordered_at,

        -- flags: a cancellation/return reduces spend and is not a purchase; a guest order has
        -- no user (kept for item statistics, never in a profile)
        {% for flag in ['is_cancelled', 'is_guest'] -%}
        {%- if flag in source_columns -%}
        coalesce(cast({{ flag }} as {{ dbt.type_boolean() }}), false) as {{ flag }},
        {%- else -%}
        cast(false as {{ dbt.type_boolean() }}) as {{ flag }},
        {%- endif %}
        {% endfor %}

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
