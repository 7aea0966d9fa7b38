{% macro slugify_category(category) -%}
    {#- 'Home & Garden' -> 'home_garden': lowercase [a-z0-9_], no leading/trailing '_'. -#}
    {%- set slug = modules.re.sub('[^a-z0-9]+', '_', category | string | lower) -%}
    {%- set slug = modules.re.sub('^_+|_+$', '', slug) -%}
    {{ return(slug if slug else 'unknown') }}
{%- endmacro %}


{% macro get_share_categories() -%}
    {#-
        The catalogue categories listed by D, as a list of {'slug': ..., 'categories': [...]}
        sorted by slug (categories that slugify alike share one column).

        Unit tests cannot run a query against their fixtures, so they pass the raw category
        names through the var `share_categories` instead.
    -#}
    {%- set items = ref('int_items_as_of') -%}
    {%- set override = var('share_categories', none) -%}
    {%- if override is not none -%}
        {%- set categories = override -%}
    {%- elif execute -%}
        {%- set query -%}
            select distinct category
            from {{ items }}
            where category is not null
            order by category
        {%- endset -%}
        {%- set categories = run_query(query).columns[0].values() -%}
    {%- else -%}
        {%- set categories = [] -%}
    {%- endif -%}

    {%- set categories_by_slug = {} -%}
    {%- for category in categories -%}
        {%- set slug = slugify_category(category) -%}
        {%- if slug not in categories_by_slug -%}
            {%- do categories_by_slug.update({slug: []}) -%}
        {%- endif -%}
        {%- do categories_by_slug[slug].append(category | string) -%}
    {%- endfor -%}

    {%- set share_categories = [] -%}
    {%- for slug in categories_by_slug | sort -%}
        {%- do share_categories.append(
            {'slug': slug, 'categories': categories_by_slug[slug] | sort}
        ) -%}
    {%- endfor -%}
    {{ return(share_categories) }}
{%- endmacro %}


{% macro sql_string_list(values) -%}
    {#- ('a', 'b''s') from a list of strings, quotes escaped. -#}
    ({%- for value in values -%}
        '{{ value | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- endfor -%})
{%- endmacro %}
