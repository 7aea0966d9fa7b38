{#-
    The point-in-time views (intermediate, e.g. int_events_as_of) bake the run date D into
    their SQL, so they are built for one date at a time (the DAG's task dbt_views). A table
    built for D must not read views built for another date: that would happen if an Airflow
    task of an earlier date were cleared on its own after later dates ran. The views record
    the date they were built for; every table checks its views before anything is written.
-#}

{% macro views_as_of_marker() -%}
    {#- What a view built for D records: 'as_of_date=YYYY-MM-DD'. -#}
    {{- 'as_of_date=' ~ as_of_date() -}}
{%- endmacro %}


{% macro mark_view_as_of() -%}
    {#- Post-hook of the intermediate models: a view records the date it was built for. -#}
    {%- if model.config.materialized == 'view' -%}
        {{ adapter.dispatch('mark_view_as_of', 'marketing')() }}
    {%- endif -%}
{%- endmacro %}


{% macro default__mark_view_as_of() -%}
    {#- Other adapters: no record, so require_views_as_of cannot check there. -#}
{%- endmacro %}


{% macro duckdb__mark_view_as_of() -%}
    comment on view {{ this }} is '{{ views_as_of_marker() }}'
{%- endmacro %}


{% macro require_views_as_of() -%}
    {#-
        Pre-hook of every model, run before its transaction (so before any other hook): a
        table raises a compiler error when a view it selects from directly was recorded as
        built for another date than D. Views without a record (staging, which does not depend
        on D, or views built before records existed) are not checked.
    -#}
    {%- if execute and model.config.materialized != 'view' -%}
        {%- set views = [] -%}
        {%- for node_id in model.depends_on.nodes -%}
            {%- set node = graph.nodes.get(node_id) -%}
            {%- if node is not none and node.resource_type == 'model'
                    and node.config.materialized == 'view' -%}
                {%- do views.append(node) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set records = adapter.dispatch('views_as_of_records', 'marketing')(views)
                          if views else {} -%}
        {%- set stale = [] -%}
        {%- for name, record in records.items() -%}
            {%- if record and record.startswith('as_of_date=') and record != views_as_of_marker() -%}
                {%- do stale.append(name ~ ' (' ~ record ~ ')') -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if stale -%}
            {{ exceptions.raise_compiler_error(
                model.name ~ " is being built for as_of_date=" ~ as_of_date()
                ~ " but reads views built for another date: " ~ stale | sort | join(', ')
                ~ ". Rebuild the views for this date first (in Airflow: clear task dbt_views"
                ~ " of this run with 'downstream'; with dbt: build"
                ~ " tag:profiles,config.materialized:view before the table)."
            ) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{% macro default__views_as_of_records(views) -%}
    {{ return({}) }}
{%- endmacro %}


{% macro duckdb__views_as_of_records(views) -%}
    {#- {"schema.view": comment} of the existing views among `views` (graph nodes). -#}
    {%- set pairs = [] -%}
    {%- for view in views -%}
        {%- do pairs.append("('" ~ view.schema ~ "', '" ~ (view.alias or view.name) ~ "')") -%}
    {%- endfor -%}
    {%- set query -%}
        select schema_name || '.' || view_name, comment
        from duckdb_views()
        where
            database_name = '{{ views[0].database }}'
            and (schema_name, view_name) in ({{ pairs | join(', ') }})
    {%- endset -%}
    {%- set records = {} -%}
    {%- for row in run_query(query).rows -%}
        {%- do records.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {{ return(records) }}
{%- endmacro %}
