with

source as (

    select * from {{ source('shop', 'campaigns') }}

),

renamed as (

    select
        -- ids
        cast(campaign_id as {{ dbt.type_bigint() }}) as campaign_id,

        -- properties
        cast(campaign_name as {{ dbt.type_string() }}) as campaign_name,
        cast(channel as {{ dbt.type_string() }}) as channel,
        cast(response_window_days as {{ dbt.type_int() }}) as response_window_days,

        -- timestamps
        cast(starts_at as {{ dbt.type_timestamp() }}) as starts_at,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
