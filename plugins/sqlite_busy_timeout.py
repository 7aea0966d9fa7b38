"""SQLite connection arguments for the metadata DB of ``make airflow`` (Airflow glue only).

Four services share one SQLite file; by default a writer that finds the file busy gives up
after 5 s with "database is locked" (the REST API then answers 503, e.g. on creating a
backfill while the scheduler writes). Waiting longer makes SQLite serialise the writers.
scripts/airflow_env.sh points ``[database] sql_alchemy_connect_args`` here; the plugins folder
is on ``sys.path`` before Airflow opens its database.
"""

CONNECT_ARGS = {"timeout": 60, "check_same_thread": False}
