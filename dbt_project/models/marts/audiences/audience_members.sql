{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_as_of_date_partition() }}",
        post_hook="{{ delete_erased_users('dim_users') }}",
    )
}}

with

audience_definitions as (

    select *
    from {{ source('ml', 'audience_definitions') }}
    where as_of_date = {{ as_of_date_sql() }}

),

user_profiles as (

    select *
    from {{ ref('user_profiles') }}
    where as_of_date = {{ as_of_date_sql() }}

),

user_segments as (

    select *
    from {{ source('ml', 'user_segments') }}
    where as_of_date = {{ as_of_date_sql() }}

),

campaign_scores as (

    select *
    from {{ source('ml', 'campaign_scores') }}
    where as_of_date = {{ as_of_date_sql() }}

),

user_rfm as (

    select *
    from {{ ref('user_rfm') }}
    where as_of_date = {{ as_of_date_sql() }}

),

user_predictions as (

    select *
    from {{ source('ml', 'user_predictions') }}
    where as_of_date = {{ as_of_date_sql() }}

),

recommended_top3 as (

    -- the categories and items of each user's top-3 recommendations, one row per pick
    select
        user_recommendations.user_id,
        cast(user_recommendations.item_id as varchar) as item_id,
        items.category
    from {{ source('ml', 'user_recommendations') }} as user_recommendations
    inner join {{ ref('stg_shop__items') }} as items
        on user_recommendations.item_id = items.item_id
    where
        user_recommendations.as_of_date = {{ as_of_date_sql() }}
        and user_recommendations.rank <= 3

),

users as (

    select * from {{ ref('dim_users') }}

),

candidates as (

    -- every audience rule against every profile of D: definitions are a handful of rows
    select
        audience_definitions.audience_name,
        audience_definitions.channel,
        audience_definitions.segment_name as required_segment_name,
        audience_definitions.segment_id as required_segment_id,
        audience_definitions.min_response_probability,
        audience_definitions.max_recency_days,
        audience_definitions.min_recency_days,
        audience_definitions.min_orders_lifetime,
        audience_definitions.max_orders_lifetime,
        audience_definitions.rfm_labels,
        audience_definitions.membership_tiers,
        audience_definitions.min_uplift,
        audience_definitions.max_decile,
        audience_definitions.min_churn_probability,
        audience_definitions.recommended_categories,
        audience_definitions.recommended_item_ids,
        user_profiles.user_id,
        user_profiles.recency_days,
        user_profiles.count_orders_lifetime,
        user_segments.segment_name,
        user_segments.segment_id,
        campaign_scores.response_probability,
        campaign_scores.uplift,
        campaign_scores.decile,
        user_rfm.rfm_label,
        user_rfm.membership_tier,
        user_predictions.churn_probability
    from audience_definitions
    cross join user_profiles
    left join user_segments
        on user_profiles.user_id = user_segments.user_id
    left join campaign_scores
        on
            user_profiles.user_id = campaign_scores.user_id
            and audience_definitions.campaign_id = campaign_scores.campaign_id
    left join user_rfm
        on user_profiles.user_id = user_rfm.user_id
    left join user_predictions
        on user_profiles.user_id = user_predictions.user_id

),

rule_members as (

    -- users meeting an audience's include rules (any channel, before consent); a NULL rule is
    -- no condition, a rule on a missing value (no score, never ordered) fails
    select distinct
        audience_name,
        user_id
    from candidates
    where
        (
            (required_segment_name is null and required_segment_id is null)
            or segment_name = required_segment_name
            or segment_id = required_segment_id
        )
        and (
            min_response_probability is null
            or response_probability >= min_response_probability
        )
        and (max_recency_days is null or recency_days <= max_recency_days)
        and (min_recency_days is null or recency_days >= min_recency_days)
        and (min_orders_lifetime is null or count_orders_lifetime >= min_orders_lifetime)
        and (max_orders_lifetime is null or count_orders_lifetime <= max_orders_lifetime)
        and (
            rfm_labels is null
            or position(',' || rfm_label || ',' in ',' || rfm_labels || ',') > 0
        )
        and (
            membership_tiers is null
            or position(',' || membership_tier || ',' in ',' || membership_tiers || ',') > 0
        )
        and (min_uplift is null or uplift >= min_uplift)
        and (max_decile is null or decile <= max_decile)
        and (min_churn_probability is null or churn_probability >= min_churn_probability)
        and (
            recommended_categories is null
            or exists (
                select 1
                from recommended_top3
                where
                    recommended_top3.user_id = candidates.user_id
                    and position(
                        ',' || recommended_top3.category || ','
                        in ',' || candidates.recommended_categories || ','
                    ) > 0
            )
        )
        and (
            recommended_item_ids is null
            or exists (
                select 1
                from recommended_top3
                where
                    recommended_top3.user_id = candidates.user_id
                    and position(
                        ',' || recommended_top3.item_id || ','
                        in ',' || candidates.recommended_item_ids || ','
                    ) > 0
            )
        )

),

audience_settings as (

    select distinct
        audience_name,
        exclude_audiences,
        coalesce(exclude_suppressed, false) as exclude_suppressed,
        exclusive_group,
        priority,
        coalesce(holdout_pct, 0) as holdout_pct,
        coalesce(holdout_salt, '') as holdout_salt
    from audience_definitions

),

not_excluded as (

    -- exclusions read the other audience's include rules only (no chains, no cycles)
    select
        rule_members.audience_name,
        rule_members.user_id,
        audience_settings.exclude_suppressed,
        audience_settings.exclusive_group,
        audience_settings.priority,
        audience_settings.holdout_pct,
        audience_settings.holdout_salt
    from rule_members
    inner join audience_settings
        on rule_members.audience_name = audience_settings.audience_name
    where not exists (
        select 1
        from rule_members as other_members
        where
            other_members.user_id = rule_members.user_id
            and audience_settings.exclude_audiences is not null
            and position(
                ',' || other_members.audience_name || ','
                in ',' || audience_settings.exclude_audiences || ','
            ) > 0
    )

),

prioritised as (

    -- in an exclusive group a user keeps only the audience with the lowest priority number
    select
        *,
        row_number() over (
            partition by coalesce(exclusive_group, audience_name), user_id
            order by priority, audience_name
        ) as group_rank
    from not_excluded

),

with_holdout as (

    -- deterministic control group: md5 of "salt:audience:user" -> bucket 0..9999
    select
        audience_name,
        user_id,
        exclude_suppressed,
        cast(
            cast(('0x' || substr(md5(
                holdout_salt || ':' || audience_name || ':' || cast(user_id as varchar)
            ), 1, 8)) as bigint) % 10000 as integer
        ) < holdout_pct * 100 as is_holdout
    from prioritised
    where group_rank = 1

),

channel_members as (

    select
        with_holdout.audience_name,
        channels.channel,
        with_holdout.user_id,
        with_holdout.exclude_suppressed,
        with_holdout.is_holdout
    from with_holdout
    inner join (select distinct audience_name, channel from audience_definitions) as channels
        on with_holdout.audience_name = channels.audience_name

),

eligible as (

    -- consent and suppression as of D; erasure as known now (dim_users), never published
    select
        channel_members.*
    from channel_members
    inner join user_profiles
        on channel_members.user_id = user_profiles.user_id
    inner join users
        on channel_members.user_id = users.user_id
    where
        not users.is_erased
        and not (channel_members.exclude_suppressed and user_profiles.is_email_suppressed)
        and (
            (
                channel_members.channel = 'email'
                and user_profiles.is_email_opt_in
                and not user_profiles.is_email_suppressed
                and users.email is not null
            )
            or (
                channel_members.channel in ('google_ads', 'meta_ads')
                and user_profiles.is_ads_opt_in
                and (users.email is not null or users.phone is not null)
            )
        )

),

audience_members as (

    select
        audience_name,
        channel,
        user_id,
        is_holdout,
        {{ as_of_date_sql() }} as as_of_date
    from eligible

)

select * from audience_members
