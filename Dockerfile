# The project's Airflow image: the official Airflow 3.3.2 image plus this project's pinned
# requirements and its domain package. dags/, plugins/, include/, dbt_project/ and data/ are
# mounted by docker-compose.yml, so code changes need no rebuild.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt pyproject.toml /opt/airflow/project/
COPY --chown=airflow:root include /opt/airflow/project/include
RUN pip install --no-cache-dir -r /opt/airflow/project/requirements.txt \
    && pip install --no-cache-dir --no-deps -e /opt/airflow/project

ENV MARKETING_DATA_DIR=/opt/airflow/project/data \
    MARKETING_DBT_PROJECT_DIR=/opt/airflow/project/dbt_project \
    MARKETING_DBT_EXECUTABLE=/home/airflow/.local/bin/dbt
