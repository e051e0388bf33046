"""The production-shaped Airflow stack (PostgreSQL, api-server, scheduler, dag-processor)."""
