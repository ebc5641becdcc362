# The Airflow image of the compose stack: the official image plus this package (and its DAGs).
# Build: docker compose build   (or: docker build -t nugen-etl-airflow .)
FROM apache/airflow:3.3.2

# Install the package as the image's airflow user, pinning Airflow to the image's own version so
# the resolver can never swap it (AIRFLOW_VERSION is set by the base image).
COPY --chown=airflow:root pyproject.toml README.md /opt/nugen-etl/
COPY --chown=airflow:root nugen_etl /opt/nugen-etl/nugen_etl
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/nugen-etl[airflow,report]"

# The DAGs ship in the image too (the compose file also mounts ./dags over them for development).
COPY --chown=airflow:root dags /opt/airflow/dags
# The raw archive and Parquet datasets (a named volume in the compose file, owned by airflow).
RUN mkdir -p /opt/airflow/nugen-data
