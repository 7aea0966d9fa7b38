#!/usr/bin/env bash
# make docs: the static dbt docs site (one self-contained HTML file) for this project, written
# to $MARKETING_DATA_DIR/reports/dbt_docs/static_index.html. The catalog (column types, row
# counts) comes from the warehouse when there is one; otherwise from the project alone.
set -euo pipefail
source "$(dirname "$0")/airflow_env.sh"
OUT="$MARKETING_DATA_DIR/reports/dbt_docs"
AS_OF="${AS_OF_DATE:-$(date -u +%F)}"
mkdir -p "$OUT"
args=(docs generate --static --project-dir "$REPO_ROOT/dbt_project" --profiles-dir "$REPO_ROOT/dbt_project"
      --target-path "$OUT" --vars "{as_of_date: $AS_OF}" --quiet)
if [[ ! -f "$MARKETING_WAREHOUSE" ]]; then
    echo "no warehouse at $MARKETING_WAREHOUSE: docs without a catalog (run make demo first for one)"
    args+=(--empty-catalog)
    export MARKETING_WAREHOUSE="$OUT/empty.duckdb"
fi
dbt "${args[@]}"
rm -f "$OUT/empty.duckdb"
echo "dbt docs: $OUT/static_index.html"
