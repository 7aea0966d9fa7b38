with

source as (

    select * from {{ source('shop', 'campaign_responses') }}

),

renamed as (

    select
        -- ids
        cast(response_id as {{ dbt.type_bigint() }}) as response_id,
        cast(send_id as {{ dbt.type_bigint() }}) as send_id,
        cast(campaign_id as {{ dbt.type_bigint() }}) as campaign_id,
        cast(user_id as {{ dbt.type_bigint() }}) as user_id,

        -- timestamps
        cast(responded_at as {{ dbt.type_timestamp() }}) as responded_at,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
