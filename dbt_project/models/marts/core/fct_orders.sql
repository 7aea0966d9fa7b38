with

orders as (

    select * from {{ ref('int_orders_with_totals') }}

),

users as (

    select * from {{ ref('int_users_with_privacy_flags') }}

),

fct_orders as (

    select
        orders.order_id,
        -- erased users' orders stay for revenue reporting but no longer point to the user
        case when users.is_erased then null else orders.user_id end as user_id,
        orders.ordered_at,
        cast(orders.ordered_at as date) as ordered_on,
        orders.order_total,
        orders.count_lines,
        {{ as_of_date_sql() }} as as_of_date
    from orders
    left join users
        on orders.user_id = users.user_id

)

select * from fct_orders
