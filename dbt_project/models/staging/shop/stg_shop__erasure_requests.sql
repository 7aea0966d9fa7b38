with

source as (

    select * from {{ source('shop', 'erasure_requests') }}

),

renamed as (

    select
        -- ids
        cast(user_id as {{ dbt.type_bigint() }}) as user_id,

        -- timestamps
        cast(requested_at as {{ dbt.type_timestamp() }}) as requested_at,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
