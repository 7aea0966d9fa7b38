{#-
    What each of D's segments looks like in profile units, for marketers: size and share,
    mean and median of the segmentation features, the top categories (highest mean 90-day
    share) and countries, and the mean response probability over D's campaign scores.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_as_of_date_partition() }}",
    )
}}

{%- set share_categories = get_share_categories() %}
{%- set features = [
    'recency_days', 'count_orders_lifetime', 'monetary_lifetime', 'average_order_value',
    'count_sessions_30d', 'count_sessions_90d', 'count_views_90d', 'count_carts_90d',
    'count_purchases_90d', 'conversion_rate_90d', 'tenure_days',
] %}

with

user_segments as (

    select * from {{ source('ml', 'user_segments') }}
    where as_of_date = {{ as_of_date_sql() }}

),

user_profiles as (

    select * from {{ ref('user_profiles') }}
    where as_of_date = {{ as_of_date_sql() }}

),

campaign_scores as (

    select * from {{ source('ml', 'campaign_scores') }}
    where as_of_date = {{ as_of_date_sql() }}

),

segmented_users as (

    select
        user_segments.segment_id,
        user_segments.segment_name,
        user_profiles.*
    from user_segments
    inner join user_profiles
        on user_segments.user_id = user_profiles.user_id

),

segment_features as (

    select
        segment_id,
        min(segment_name) as segment_name,
        count(*) as size,
        {%- for feature in features %}
        avg(cast({{ feature }} as {{ type_double() }})) as mean_{{ feature }},
        percentile_cont(0.5) within group (order by {{ feature }}) as median_{{ feature }},
        {%- endfor %}
        count(*) * 1.0 / sum(count(*)) over () as share_of_users
    from segmented_users
    group by segment_id

),

category_interest as (

    {%- if share_categories | length == 0 %}
    select
        cast(null as integer) as segment_id,
        cast(null as {{ dbt.type_string() }}) as category,
        cast(null as {{ type_double() }}) as mean_share
    where 1 = 0
    {%- else %}
    {%- for category in share_categories %}
    select
        segment_id,
        '{{ category.slug }}' as category,
        avg(coalesce(share_{{ category.slug }}, 0)) as mean_share
    from segmented_users
    group by segment_id
    {{ 'union all' if not loop.last }}
    {%- endfor %}
    {%- endif %}

),

category_ranked as (

    select
        segment_id,
        category,
        row_number() over (
            partition by segment_id order by mean_share desc, category
        ) as category_rank
    from category_interest
    where mean_share > 0

),

top_categories as (

    select
        segment_id,
        {{ dbt.listagg('category', "', '", 'order by category_rank') }} as top_categories
    from category_ranked
    where category_rank <= 3
    group by segment_id

),

country_counts as (

    select
        segment_id,
        coalesce(country, 'unknown') as country,
        count(*) as users
    from segmented_users
    group by segment_id, coalesce(country, 'unknown')

),

country_ranked as (

    select
        segment_id,
        country,
        row_number() over (partition by segment_id order by users desc, country) as country_rank
    from country_counts

),

top_countries as (

    select
        segment_id,
        {{ dbt.listagg('country', "', '", 'order by country_rank') }} as top_countries
    from country_ranked
    where country_rank <= 3
    group by segment_id

),

segment_response as (

    select
        user_segments.segment_id,
        avg(campaign_scores.response_probability) as mean_response_probability
    from campaign_scores
    inner join user_segments
        on campaign_scores.user_id = user_segments.user_id
    group by user_segments.segment_id

),

segment_profiles as (

    select
        segment_features.segment_id,
        {{ as_of_date_sql() }} as as_of_date,
        segment_features.segment_name,
        segment_features.size,
        segment_features.share_of_users,
        top_categories.top_categories,
        top_countries.top_countries,
        segment_response.mean_response_probability,
        {%- for feature in features %}
        segment_features.mean_{{ feature }},
        segment_features.median_{{ feature }}{{ ',' if not loop.last }}
        {%- endfor %}
    from segment_features
    left join top_categories
        on segment_features.segment_id = top_categories.segment_id
    left join top_countries
        on segment_features.segment_id = top_countries.segment_id
    left join segment_response
        on segment_features.segment_id = segment_response.segment_id

)

select * from segment_profiles
