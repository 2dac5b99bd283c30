#!/bin/bash
# First start of the PostgreSQL container (empty data volume): the lineage store and Marquez's
# databases beside Airflow's, with the lineage store's own writer role and the auditor's read-only
# role (the same grants as `pipelines lineage auditor-role`, pipelines/lineage/roles.py). Passwords
# come from docker/.env through the container's environment, never from this file.
set -euo pipefail
: "${LINEAGE_DB_PASSWORD:?set LINEAGE_DB_PASSWORD in docker/.env}"
: "${LINEAGE_AUDITOR_PASSWORD:?set LINEAGE_AUDITOR_PASSWORD in docker/.env}"
auditor="${LINEAGE_AUDITOR_USER:-lineage_auditor}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v writer_pw="$LINEAGE_DB_PASSWORD" -v auditor_pw="$LINEAGE_AUDITOR_PASSWORD" \
     -v auditor="$auditor" <<'SQL'
CREATE ROLE lineage LOGIN PASSWORD :'writer_pw';
CREATE ROLE :"auditor" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'auditor_pw';
ALTER ROLE :"auditor" SET default_transaction_read_only = on;
CREATE DATABASE lineage OWNER lineage;
CREATE DATABASE marquez OWNER airflow;
REVOKE ALL ON DATABASE lineage FROM PUBLIC;
GRANT CONNECT ON DATABASE lineage TO :"auditor";
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname lineage -v auditor="$auditor" <<'SQL'
-- the writer creates the tables on first use; whatever it creates, the auditor may read, only
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO lineage;
GRANT USAGE ON SCHEMA public TO :"auditor";
ALTER DEFAULT PRIVILEGES FOR ROLE lineage IN SCHEMA public GRANT SELECT ON TABLES TO :"auditor";
SQL
