with

events as (

    select * from {{ ref('int_events_as_of') }}

),

users as (

    select * from {{ ref('int_users_with_privacy_flags') }}

),

weighted_events as (

    select
        events.user_id,
        events.item_id,
        events.event_type,
        events.event_at,
        case events.event_type
            when 'view' then {{ var('event_weight_view') }}
            when 'cart' then {{ var('event_weight_cart') }}
            when 'purchase' then {{ var('event_weight_purchase') }}
            else 0
        end as event_weight,
        {{ dbt.datediff('cast(events.event_at as date)', as_of_date_sql(), 'day') }}
            as age_days
    from events
    inner join users
        on events.user_id = users.user_id
    where not users.is_erased

),

user_item_interactions as (

    select
        user_id,
        item_id,
        {{ as_of_date_sql() }} as as_of_date,
        -- exact decimals per event, so the sum does not depend on summation order
        cast(
            sum(
                cast(
                    event_weight
                    * power(
                        0.5,
                        cast(age_days as {{ type_double() }})
                        / {{ var('interaction_half_life_days') }}
                    )
                    as {{ dbt.type_numeric() }}
                )
            )
            as {{ type_double() }}
        ) as strength,
        cast(
            sum(case when event_type = 'view' then 1 else 0 end) as {{ dbt.type_bigint() }}
        ) as count_views,
        cast(
            sum(case when event_type = 'cart' then 1 else 0 end) as {{ dbt.type_bigint() }}
        ) as count_carts,
        cast(
            sum(case when event_type = 'purchase' then 1 else 0 end) as {{ dbt.type_bigint() }}
        ) as count_purchases,
        sum(case when event_type = 'purchase' then 1 else 0 end) > 0 as has_purchased,
        max(event_at) as last_interacted_at
    from weighted_events
    group by user_id, item_id

)

select * from user_item_interactions
