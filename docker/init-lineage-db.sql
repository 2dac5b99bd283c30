-- Extra databases beside Airflow's metadata DB: our lineage store and Marquez's.
CREATE DATABASE lineage OWNER airflow;
CREATE DATABASE marquez OWNER airflow;
