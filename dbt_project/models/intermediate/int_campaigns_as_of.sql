-- Point in time: the campaigns a run for as_of_date may see.
with

campaigns as (

    select * from {{ ref('stg_shop__campaigns') }}

),

known_as_of as (

    select *
    from campaigns
    where {{ known_as_of('starts_at') }}

)

select * from known_as_of
