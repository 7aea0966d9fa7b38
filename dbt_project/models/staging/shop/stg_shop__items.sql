with

source as (

    select * from {{ source('shop', 'items') }}

),

renamed as (

    select
        -- ids
        cast(item_id as {{ dbt.type_bigint() }}) as item_id,

        -- properties
        cast(name as {{ dbt.type_string() }}) as name,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(price as {{ type_double() }}) as price,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
