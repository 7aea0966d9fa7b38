with

source as (

    select * from {{ source('shop', 'suppressions') }}

),

renamed as (

    select
        -- contact details (PII)
        cast(email as {{ dbt.type_string() }}) as email,

        -- properties
        cast(reason as {{ dbt.type_string() }}) as suppression_reason,

        -- timestamps
        cast(suppressed_at as {{ dbt.type_timestamp() }}) as suppressed_at,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
