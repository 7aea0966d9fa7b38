-- Point in time: the erasure_requests a run for as_of_date may see.
with

erasure_requests as (

    select * from {{ ref('stg_shop__erasure_requests') }}

),

known_as_of as (

    select *
    from erasure_requests
    where {{ known_as_of('requested_at') }}

)

select * from known_as_of
