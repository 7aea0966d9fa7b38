{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        pre_hook="{{ delete_as_of_date_partition() }}",
    )
}}

with

user_segments as (

    select * from {{ source('ml', 'user_segments') }}

),

previous_run as (

    -- the most recent segmentation before D (none on the first run)
    select max(as_of_date) as previous_as_of_date
    from user_segments
    where as_of_date < {{ as_of_date_sql() }}

),

segments_today as (

    select
        user_id,
        segment_id,
        segment_name
    from user_segments
    where as_of_date = {{ as_of_date_sql() }}

),

segments_before as (

    select
        user_segments.user_id,
        user_segments.segment_id,
        user_segments.segment_name
    from user_segments
    inner join previous_run
        on user_segments.as_of_date = previous_run.previous_as_of_date

),

user_moves as (

    select
        segments_before.segment_id as from_segment_id,
        segments_before.segment_name as from_segment_name,
        segments_today.segment_id as to_segment_id,
        segments_today.segment_name as to_segment_name
    from segments_today
    full outer join segments_before
        on segments_today.user_id = segments_before.user_id

),

segment_migrations as (

    select
        user_moves.from_segment_id,
        user_moves.from_segment_name,
        user_moves.to_segment_id,
        user_moves.to_segment_name,
        count(*) as users,
        {{ as_of_date_sql() }} as as_of_date,
        previous_run.previous_as_of_date
    from user_moves
    cross join previous_run
    group by
        user_moves.from_segment_id,
        user_moves.from_segment_name,
        user_moves.to_segment_id,
        user_moves.to_segment_name,
        previous_run.previous_as_of_date

)

select * from segment_migrations
