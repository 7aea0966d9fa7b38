{#-
    User x item interaction strengths as of a date: shared by user_item_interactions (as of
    D) and user_item_interactions_train (as of D - holdout days, for the offline evaluation),
    so both apply the same event weights and decay.
-#}

{% macro user_item_interactions_as_of(events, users, as_of_sql) -%}
{#- Select statement: one row per (user_id, item_id) of non-erased users' events in
    `events` (already bounded to the wanted date), strengths decayed to `as_of_sql`. -#}
with

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
        {{ dbt.datediff('cast(events.event_at as date)', as_of_sql, 'day') }}
            as age_days
    from {{ events }} as events
    inner join {{ users }} as users
        on events.user_id = users.user_id
    where not users.is_erased

),

user_item_interactions as (

    select
        user_id,
        item_id,
        {{ as_of_sql }} as as_of_date,
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
{%- endmacro %}


{% macro evaluation_holdout_days() -%}
    {#- Days D-h+1..D held out by the offline evaluation (var evaluation_holdout_days, 7). -#}
    {{ return(var('evaluation_holdout_days', 7) | int) }}
{%- endmacro %}
