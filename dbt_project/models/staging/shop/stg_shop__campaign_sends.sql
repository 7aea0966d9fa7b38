with

source as (

    select * from {{ source('shop', 'campaign_sends') }}

),

renamed as (

    select
        -- ids
        cast(send_id as {{ dbt.type_bigint() }}) as send_id,
        cast(campaign_id as {{ dbt.type_bigint() }}) as campaign_id,
        cast(user_id as {{ dbt.type_bigint() }}) as user_id,

        -- booleans
        cast(is_control as {{ dbt.type_boolean() }}) as is_control,

        -- timestamps
        cast(sent_at as {{ dbt.type_timestamp() }}) as sent_at,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
