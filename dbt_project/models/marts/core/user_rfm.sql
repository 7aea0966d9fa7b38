{#-
    Classic RFM baseline and membership tiers, one row per user and as_of_date.

    Scores are quintiles among the users who ordered by D (percent_rank, so equal values
    always share a score; the lowest value scores 1, the top fifth 5). Recency is inverted:
    the most recent buyers score 5. The label is looked up from R and FM = round((F + M) / 2)
    on the grid below (documented in _core__models.yml and docs/contracts.md):

        R \ FM   1               2               3               4               5
        5        New             Potential L.    Potential L.    Champions       Champions
        4        Promising       Potential L.    Potential L.    Champions       Champions
        3        About to Sleep  About to Sleep  Need Attention  Loyal           Loyal
        2        Hibernating     Hibernating     At Risk         At Risk         Can't Lose Them
        1        Lost            Lost            At Risk         Can't Lose Them Can't Lose Them

    Users who never ordered have NULL scores and label. Tiers use the trailing-365-day spend
    and the vars membership_tier_{silver,gold,platinum}_min_spend.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_as_of_date_partition() }}",
        post_hook="{{ delete_erased_users('int_users_with_privacy_flags') }}",
    )
}}

-- depends_on: {{ ref('int_users_with_privacy_flags') }}

with

user_profiles as (

    select * from {{ ref('user_profiles') }}
    where as_of_date = {{ as_of_date_sql() }}

),

orders as (

    select * from {{ ref('int_orders_with_totals') }}

),

spend_trailing_year as (

    select
        user_id,
        -- net of cancellations/returns, never below 0 (a return of an older order)
        greatest(sum(net_order_total), 0) as spend_12m
    from orders
    where ordered_at >= {{ dbt.dateadd('day', -365, as_of_cutoff_sql()) }}
        and ordered_at < {{ as_of_cutoff_sql() }}
    group by user_id

),

buyers_ranked as (

    select
        user_id,
        percent_rank() over (order by recency_days desc) as recency_percent_rank,
        percent_rank() over (order by count_orders_lifetime) as frequency_percent_rank,
        percent_rank() over (order by monetary_lifetime) as monetary_percent_rank
    from user_profiles
    where count_orders_lifetime > 0

),

buyers_scored as (

    select
        user_id,
        cast(least(5, 1 + floor(5 * recency_percent_rank)) as integer) as recency_score,
        cast(least(5, 1 + floor(5 * frequency_percent_rank)) as integer) as frequency_score,
        cast(least(5, 1 + floor(5 * monetary_percent_rank)) as integer) as monetary_score
    from buyers_ranked

),

buyers_labelled as (

    select
        user_id,
        recency_score,
        frequency_score,
        monetary_score,
        -- FM: the mean of F and M rounded half up
        cast(floor((frequency_score + monetary_score + 1) / 2) as integer)
            as frequency_monetary_score
    from buyers_scored

),

user_rfm as (

    select
        user_profiles.user_id,
        user_profiles.as_of_date,
        buyers_labelled.recency_score,
        buyers_labelled.frequency_score,
        buyers_labelled.monetary_score,
        buyers_labelled.frequency_monetary_score,
        case
            when buyers_labelled.user_id is null then null
            when buyers_labelled.recency_score >= 4
                and buyers_labelled.frequency_monetary_score >= 4 then 'Champions'
            when buyers_labelled.recency_score >= 4
                and buyers_labelled.frequency_monetary_score >= 2 then 'Potential Loyalist'
            when buyers_labelled.recency_score = 5 then 'New'
            when buyers_labelled.recency_score = 4 then 'Promising'
            when buyers_labelled.recency_score = 3
                and buyers_labelled.frequency_monetary_score >= 4 then 'Loyal'
            when buyers_labelled.recency_score = 3
                and buyers_labelled.frequency_monetary_score = 3 then 'Need Attention'
            when buyers_labelled.recency_score = 3 then 'About to Sleep'
            when buyers_labelled.frequency_monetary_score = 5 then 'Can''t Lose Them'
            when buyers_labelled.recency_score = 1
                and buyers_labelled.frequency_monetary_score = 4 then 'Can''t Lose Them'
            when buyers_labelled.frequency_monetary_score >= 3 then 'At Risk'
            when buyers_labelled.recency_score = 2 then 'Hibernating'
            else 'Lost'
        end as rfm_label,
        user_profiles.recency_days,
        user_profiles.count_orders_lifetime,
        user_profiles.monetary_lifetime,
        cast(coalesce(spend_trailing_year.spend_12m, 0) as {{ type_double() }}) as spend_12m,
        case
            when coalesce(spend_trailing_year.spend_12m, 0)
                >= {{ var('membership_tier_platinum_min_spend') }} then 'Platinum'
            when coalesce(spend_trailing_year.spend_12m, 0)
                >= {{ var('membership_tier_gold_min_spend') }} then 'Gold'
            when coalesce(spend_trailing_year.spend_12m, 0)
                >= {{ var('membership_tier_silver_min_spend') }} then 'Silver'
            else 'Bronze'
        end as membership_tier
    from user_profiles
    left join buyers_labelled
        on user_profiles.user_id = buyers_labelled.user_id
    left join spend_trailing_year
        on user_profiles.user_id = spend_trailing_year.user_id

)

select * from user_rfm
