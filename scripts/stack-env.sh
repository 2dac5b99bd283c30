# The CeleryExecutor settings of scripts/stack.sh, over scripts/airflow-env.sh: sourced after it
# with STACK_DIR, PG_PORT and REDIS_PORT set. docker/compose.yaml sets the same variables (with the
# services' host names instead of 127.0.0.1); tests/deploy/test_compose.py checks they agree.
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://airflow@127.0.0.1:$PG_PORT/airflow"
export AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql+psycopg2://airflow@127.0.0.1:$PG_PORT/airflow"
export AIRFLOW__CELERY__WORKER_CONCURRENCY="${STACK_WORKER_CONCURRENCY:-1}"
export AIRFLOW__OPERATORS__DEFAULT_QUEUE=default
# The DAG routes transform, train and evaluate to this queue (dags/retrain.py, HEAVY).
export PIPELINES_HEAVY_QUEUE="${PIPELINES_HEAVY_QUEUE:-heavy}"
# A task instance's hostname names its worker: default@host or heavy@host (pipelines/worker_name.py).
export AIRFLOW__CORE__HOSTNAME_CALLABLE=pipelines.worker_name.hostname
export PIPELINES_LINEAGE_URL="${PIPELINES_LINEAGE_URL:-postgresql+psycopg2://airflow@127.0.0.1:$PG_PORT/lineage}"
# Every Airflow process must share one JWT secret (the API server signs the workers' task tokens):
# AIRFLOW_JWT_SECRET of docker/.env (docker/env.template) when set, else one kept in STACK_DIR.
if [ -n "${AIRFLOW_JWT_SECRET:-}" ]; then export AIRFLOW__API_AUTH__JWT_SECRET="$AIRFLOW_JWT_SECRET"; fi
if [ -z "${AIRFLOW__API_AUTH__JWT_SECRET:-}" ]; then
  [ -s "$STACK_DIR/jwt_secret" ] || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STACK_DIR/jwt_secret")
  AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$STACK_DIR/jwt_secret")"
  export AIRFLOW__API_AUTH__JWT_SECRET
fi
