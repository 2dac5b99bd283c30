#!/usr/bin/env bash
# `make airflow`: Airflow 3 standalone (scheduler, DAG processor, triggerer, API server with the UI)
# on 127.0.0.1 with this checkout's DAGs, SQLite and the LocalExecutor, home under var/airflow.
#
#   AIRFLOW_PORT=8080 bash scripts/airflow-standalone.sh      stop with Ctrl-C
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -f .venv/.installed ] || [ -x .venv/bin/airflow ] || make install
# shellcheck source=scripts/airflow-env.sh
source scripts/airflow-env.sh
password_file="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
cat <<MSG
Airflow UI and REST API: http://127.0.0.1:$AIRFLOW_PORT   (DAGs from $AIRFLOW__CORE__DAGS_FOLDER)
Log in as user 'admin'; the password is in $password_file
(written when the API server starts; \`cat\` it once the banner below appears).
Artifacts: $PIPELINES_HOME   Stage demo data first: pipelines demo-data configs/adult.yaml
MSG
exec airflow standalone
