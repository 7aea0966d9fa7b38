-- Point in time: the users a run for as_of_date may see.
with

users as (

    select * from {{ ref('stg_shop__users') }}

),

known_as_of as (

    select *
    from users
    where {{ known_as_of('signed_up_at') }}

)

select * from known_as_of
