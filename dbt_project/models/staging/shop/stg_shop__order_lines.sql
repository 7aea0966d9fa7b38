with

source as (

    select * from {{ source('shop', 'order_lines') }}

),

renamed as (

    select
        -- ids
        cast(order_id as {{ dbt.type_bigint() }}) as order_id,
        cast(line_number as {{ dbt.type_int() }}) as line_number,
        cast(item_id as {{ dbt.type_bigint() }}) as item_id,

        -- numerics
        cast(quantity as {{ dbt.type_int() }}) as quantity,
        cast(unit_price as {{ type_double() }}) as unit_price,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
