with

source as (

    select * from {{ source('shop', 'events') }}

),

renamed as (

    select
        -- ids
        cast(event_id as {{ dbt.type_bigint() }}) as event_id,
        cast(user_id as {{ dbt.type_bigint() }}) as user_id,
        cast(item_id as {{ dbt.type_bigint() }}) as item_id,
        cast(session_id as {{ dbt.type_string() }}) as session_id,

        -- properties
        cast(event_type as {{ dbt.type_string() }}) as event_type,

        -- timestamps
        cast(event_at as {{ dbt.type_timestamp() }}) as event_at,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
