-- Point in time: the order lines a run for as_of_date may see (lines carry no timestamp:
-- they are known when their order is).
with

order_lines as (

    select * from {{ ref('stg_shop__order_lines') }}

),

orders as (

    select * from {{ ref('int_orders_as_of') }}

),

known_as_of as (

    select
        order_lines.*,
        -- a line of a cancellation/return: its (positive) quantity is given back
        orders.is_cancelled as is_return,
        order_lines.unit_price = 0 as is_zero_price
    from order_lines
    inner join orders
        on order_lines.order_id = orders.order_id
    where {{ known_as_of(partition_column='order_lines.partition_date') }}

)

select * from known_as_of
