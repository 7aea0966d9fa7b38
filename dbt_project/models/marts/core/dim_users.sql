with

users as (

    select * from {{ ref('int_users_with_privacy_flags') }}

),

dim_users as (

    select
        user_id,
        -- an erased user keeps only pseudonymous, non-contact attributes
        case when is_erased then null else email end as email,
        case when is_erased then null else phone end as phone,
        case when is_erased then null else first_name end as first_name,
        case when is_erased then null else last_name end as last_name,
        country,
        case when is_erased then null else city end as city,
        case when is_erased then null else postal_code end as postal_code,
        signed_up_at,
        is_email_opt_in and not is_erased as is_email_opt_in,
        is_ads_opt_in and not is_erased as is_ads_opt_in,
        is_email_suppressed,
        is_erased,
        {{ as_of_date_sql() }} as as_of_date
    from users

)

select * from dim_users
