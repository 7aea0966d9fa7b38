{#-
    Holdout lift per audience, channel and cohort: members of cohort date d that were exported
    (is_holdout false) vs held out, response = an order within the window after d.

    Only cohorts whose response window has closed by D appear ("once responses exist"), so a
    row never changes after it first appears (orders are point in time for D). The window is
    var('audience_lift_window_days', 14). The confidence interval is the 95% Wald interval of
    the difference of two proportions; NULL when either group is empty.
-#}

{%- set window_days = var('audience_lift_window_days', 14) -%}

with

members as (

    -- partitions written before holdouts existed have is_holdout NULL: not comparable
    select *
    from {{ ref('audience_members') }}
    where
        as_of_date <= {{ dbt.dateadd('day', -window_days, as_of_date_sql()) }}
        and is_holdout is not null

),

orders as (

    select * from {{ ref('int_orders_as_of') }}

),

member_responses as (

    select
        members.audience_name,
        members.channel,
        members.as_of_date as cohort_date,
        members.user_id,
        members.is_holdout,
        case
            when exists (
                select 1
                from orders
                where
                    orders.user_id = members.user_id
                    and orders.ordered_at
                    >= cast({{ dbt.dateadd('day', 1, 'members.as_of_date') }}
                        as {{ dbt.type_timestamp() }})
                    and orders.ordered_at
                    < cast({{ dbt.dateadd('day', window_days + 1, 'members.as_of_date') }}
                        as {{ dbt.type_timestamp() }})
            ) then 1
            else 0
        end as has_responded
    from members

),

cohorts as (

    select
        audience_name,
        channel,
        cohort_date,
        sum(case when not is_holdout then 1 else 0 end) as count_exported,
        sum(case when not is_holdout then has_responded else 0 end) as count_exported_responders,
        sum(case when is_holdout then 1 else 0 end) as count_holdout,
        sum(case when is_holdout then has_responded else 0 end) as count_holdout_responders
    from member_responses
    group by audience_name, channel, cohort_date

),

rates as (

    select
        *,
        case
            when count_exported > 0
                then count_exported_responders * 1.0 / count_exported
        end as response_rate_exported,
        case
            when count_holdout > 0
                then count_holdout_responders * 1.0 / count_holdout
        end as response_rate_holdout
    from cohorts

),

with_interval as (

    select
        *,
        1.96 * sqrt(
            response_rate_exported * (1 - response_rate_exported) / count_exported
            + response_rate_holdout * (1 - response_rate_holdout) / count_holdout
        ) as half_width
    from rates

),

audience_lift as (

    select
        audience_name,
        channel,
        cohort_date,
        {{ as_of_date_sql() }} as as_of_date,
        {{ window_days }} as response_window_days,
        count_exported,
        count_exported_responders,
        count_holdout,
        count_holdout_responders,
        round(response_rate_exported, 6) as response_rate_exported,
        round(response_rate_holdout, 6) as response_rate_holdout,
        round(response_rate_exported - response_rate_holdout, 6) as lift,
        round(response_rate_exported - response_rate_holdout - half_width, 6) as lift_ci_low,
        round(response_rate_exported - response_rate_holdout + half_width, 6) as lift_ci_high
    from with_interval

)

select * from audience_lift
