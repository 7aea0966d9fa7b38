-- Point in time: the orders a run for as_of_date may see.
with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

known_as_of as (

    select *
    from orders
    where {{ known_as_of('ordered_at') }}

)

select * from known_as_of
