# Airflow environment of this checkout: `source scripts/airflow-env.sh` (bash).
#
# Sourced by scripts/demo.sh, scripts/airflow-standalone.sh, the e2e tests and benchmarks/bench_dag.py.
# Every value can be overridden by exporting it first (tests point AIRFLOW_HOME and PIPELINES_HOME at
# temporary folders and AIRFLOW_PORT at a free port). SQLite + LocalExecutor, everything on loopback.

_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PIPELINES_REPO="$_repo"
export PATH="$_repo/.venv/bin:$PATH"
export PIPELINES_HOME="${PIPELINES_HOME:-$_repo/var}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PIPELINES_HOME/airflow}"
export AIRFLOW_PORT="${AIRFLOW_PORT:-8080}"

export AIRFLOW__CORE__DAGS_FOLDER="$_repo/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-2}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$AIRFLOW_PORT"
# Tasks talk to the API server's execution API: it must follow the port (DESIGN.md, traps).
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW_PORT/execution/"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
export TF_USE_LEGACY_KERAS=1
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
mkdir -p "$AIRFLOW_HOME"
unset _repo
