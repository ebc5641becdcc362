"""Task-side library of the Airflow DAGs (dags/): thin adapters over nugen_etl.pipeline."""
