#!/usr/bin/env bash
# `make airflow`: Airflow 3 standalone (scheduler, DAG processor, triggerer, API server with the UI)
# on 127.0.0.1 with this checkout's DAGs, SQLite and the LocalExecutor, home under var/airflow.
#
#   AIRFLOW_PORT=8080 bash scripts/airflow-standalone.sh      stop with Ctrl-C or SIGTERM
#
# Ctrl-C or a SIGTERM to this script stops every process Airflow started: standalone runs in its own
# process group, which gets SIGTERM (then SIGKILL after AIRFLOW_STOP_GRACE seconds), and any process
# that left the group (a task supervisor in its own session) is found by a tag in its environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -f .venv/.installed ] || [ -x .venv/bin/airflow ] || make install
# shellcheck source=scripts/airflow-env.sh
source scripts/airflow-env.sh
# shellcheck source=scripts/proc-group.sh
source scripts/proc-group.sh
password_file="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
cat <<MSG
Airflow UI and REST API: http://127.0.0.1:$AIRFLOW_PORT   (DAGs from $AIRFLOW__CORE__DAGS_FOLDER)
Log in as user 'admin'; the password is in $password_file
(written when the API server starts; \`cat\` it once the banner below appears).
Artifacts: $PIPELINES_HOME   Stage demo data first: pipelines demo-data configs/adult.yaml
MSG
group_start standalone airflow standalone
trap 'group_stop_all; exit 130' INT
trap 'group_stop_all; exit 143' TERM
status=0
group_wait_any || status=$?
group_stop_all
exit "$status"
