-- Point in time: the suppressions a run for as_of_date may see.
with

suppressions as (

    select * from {{ ref('stg_shop__suppressions') }}

),

known_as_of as (

    select *
    from suppressions
    where {{ known_as_of('suppressed_at') }}

)

select * from known_as_of
