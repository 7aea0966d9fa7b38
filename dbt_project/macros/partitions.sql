{#- Hooks of the incremental marts partitioned by as_of_date. -#}

{% macro delete_as_of_date_partition() -%}
    {#-
        Pre-hook: empty D's partition before delete+insert, so a re-run that now yields no
        rows for D still replaces them (delete+insert alone only deletes keys it inserts).
    -#}
    {%- if is_incremental() -%}
        delete from {{ this }} where as_of_date = {{ as_of_date_sql() }}
    {%- endif -%}
{%- endmacro %}


{% macro delete_erased_users(users_model) -%}
    {#-
        Post-hook: erasure is permanent, so rows of users erased by D are also removed from
        the partitions of earlier dates (D's own partition never contains them).
        users_model: a model the hooked model already refs, with user_id and is_erased.
    -#}
    delete from {{ this }}
    where user_id in (
        select user_id
        from {{ ref(users_model) }}
        where is_erased
    )
{%- endmacro %}
