with

orders as (

    select * from {{ ref('int_orders_as_of') }}

),

order_lines as (

    select * from {{ ref('int_order_lines_as_of') }}

),

order_lines_summed as (

    select
        order_id,
        -- exact decimals: the total does not depend on summation order
        sum(cast(quantity * unit_price as {{ dbt.type_numeric() }})) as order_total,
        count(*) as count_lines,
        sum(case when unit_price = 0 then 1 else 0 end) as count_zero_price_lines
    from order_lines
    group by order_id

),

orders_with_totals as (

    select
        orders.order_id,
        orders.user_id,
        orders.ordered_at,
        cast(coalesce(order_lines_summed.order_total, 0) as {{ dbt.type_numeric() }})
            as order_total,
        cast(coalesce(order_lines_summed.count_lines, 0) as {{ dbt.type_bigint() }})
            as count_lines,
        orders.is_cancelled,
        orders.is_guest,
        -- spend net of returns: a cancellation's total counts against the customer
        cast(
            case when orders.is_cancelled then -1 else 1 end
            * coalesce(order_lines_summed.order_total, 0)
            as {{ dbt.type_numeric() }}
        ) as net_order_total,
        cast(
            coalesce(order_lines_summed.count_zero_price_lines, 0) as {{ dbt.type_bigint() }}
        ) as count_zero_price_lines
    from orders
    left join order_lines_summed
        on orders.order_id = order_lines_summed.order_id

)

select * from orders_with_totals
