with

source as (

    select * from {{ source('shop', 'users') }}

),

renamed as (

    select
        -- ids
        cast(user_id as {{ dbt.type_bigint() }}) as user_id,

        -- contact details (PII)
        cast(email as {{ dbt.type_string() }}) as email,
        cast(phone as {{ dbt.type_string() }}) as phone,
        cast(first_name as {{ dbt.type_string() }}) as first_name,
        cast(last_name as {{ dbt.type_string() }}) as last_name,

        -- geography
        cast(country as {{ dbt.type_string() }}) as country,
        cast(city as {{ dbt.type_string() }}) as city,
        cast(postal_code as {{ dbt.type_string() }}) as postal_code,

        -- consent
        cast(email_opt_in as {{ dbt.type_boolean() }}) as is_email_opt_in,
        cast(ads_opt_in as {{ dbt.type_boolean() }}) as is_ads_opt_in,

        -- timestamps
        cast(signed_up_at as {{ dbt.type_timestamp() }}) as signed_up_at,

        -- lineage
        cast(_partition_date as date) as partition_date,
        cast(_source_file as {{ dbt.type_string() }}) as source_file

    from source

)

select * from renamed
