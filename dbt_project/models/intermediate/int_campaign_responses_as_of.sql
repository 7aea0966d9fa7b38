-- Point in time: the campaign_responses a run for as_of_date may see.
with

campaign_responses as (

    select * from {{ ref('stg_shop__campaign_responses') }}

),

known_as_of as (

    select *
    from campaign_responses
    where {{ known_as_of('responded_at') }}

)

select * from known_as_of
