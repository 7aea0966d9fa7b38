-- Point in time: the events a run for as_of_date may see.
with

events as (

    select * from {{ ref('stg_shop__events') }}

),

known_as_of as (

    select *
    from events
    where {{ known_as_of('event_at') }}

)

select * from known_as_of
