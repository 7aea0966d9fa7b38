with

users as (

    select * from {{ ref('int_users_as_of') }}

),

suppressions as (

    select * from {{ ref('int_suppressions_as_of') }}

),

erasure_requests as (

    select * from {{ ref('int_erasure_requests_as_of') }}

),

suppressed_emails as (

    select distinct lower(trim(email)) as email_normalized
    from suppressions
    where email is not null

),

erased_users as (

    select
        user_id,
        min(requested_at) as erasure_requested_at
    from erasure_requests
    group by user_id

),

users_with_privacy_flags as (

    select
        users.user_id,
        users.email,
        users.phone,
        users.first_name,
        users.last_name,
        users.country,
        users.city,
        users.postal_code,
        users.signed_up_at,
        -- a missing consent is no consent
        coalesce(users.is_email_opt_in, false) as is_email_opt_in,
        coalesce(users.is_ads_opt_in, false) as is_ads_opt_in,
        suppressed_emails.email_normalized is not null as is_email_suppressed,
        erased_users.user_id is not null as is_erased,
        erased_users.erasure_requested_at
    from users
    left join suppressed_emails
        on lower(trim(users.email)) = suppressed_emails.email_normalized
    left join erased_users
        on users.user_id = erased_users.user_id

)

select * from users_with_privacy_flags
