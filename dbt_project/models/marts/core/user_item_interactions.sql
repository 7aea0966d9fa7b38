-- Strengths as of D; the logic is shared with user_item_interactions_train
-- (macro user_item_interactions_as_of).
with

events as (

    select * from {{ ref('int_events_as_of') }}

),

users as (

    select * from {{ ref('int_users_with_privacy_flags') }}

),

user_item_interactions as (

    {{ user_item_interactions_as_of('events', 'users', as_of_date_sql()) }}

)

select * from user_item_interactions
