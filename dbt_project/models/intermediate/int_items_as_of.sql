-- Point in time: the items a run for as_of_date may see.
with

items as (

    select * from {{ ref('stg_shop__items') }}

),

known_as_of as (

    select *
    from items
    where {{ known_as_of() }}

)

select * from known_as_of
