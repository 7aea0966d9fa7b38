-- Point in time: the campaign_sends a run for as_of_date may see.
with

campaign_sends as (

    select * from {{ ref('stg_shop__campaign_sends') }}

),

known_as_of as (

    select *
    from campaign_sends
    where {{ known_as_of('sent_at') }}

)

select * from known_as_of
