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

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
