#!/usr/bin/env bash
# `make stack`: the CeleryExecutor deployment on one machine without a container engine, from
# Debian's packages (scripts/install-system-deps.sh): PostgreSQL (Airflow metadata DB `airflow` and
# lineage store `lineage`), Redis (Celery broker), and Airflow's API server, scheduler, DAG processor,
# triggerer and two Celery workers: `default` (queue default) and `heavy` (queue heavy, where the DAG
# routes transform, train and evaluate). The same services as docker/compose.yaml, on loopback.
#
#   bash scripts/stack.sh            stop with Ctrl-C or SIGTERM: every process it started stops
#
# Settings (environment, else STACK_ENV_FILE, default docker/.env when present; see
# docker/env.template): STACK_DIR [var/stack] holds the PostgreSQL and Redis data, the logs
# (logs/<service>.log) and pid files (run/<service>.pid, the service's process group);
# STACK_PG_PORT [55432], STACK_REDIS_PORT [56379], AIRFLOW_PORT [8080], PIPELINES_HOME [var],
# AIRFLOW__API_AUTH__JWT_SECRET [random, kept in STACK_DIR], STACK_WORKER_CONCURRENCY [1].
# A worker or Airflow service that dies is restarted after 5 s (as compose's restart policy), at
# most STACK_MAX_RESTARTS [5] times; PostgreSQL or Redis dying stops the stack.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"
[ -f .venv/.installed ] || [ -x .venv/bin/airflow ] || make install

env_file="${STACK_ENV_FILE:-docker/.env}"
if [ -f "$env_file" ]; then
  set -a
  # shellcheck disable=SC1090
  source "$env_file"
  set +a
fi
STACK_DIR="$(mkdir -p "${STACK_DIR:-$REPO/var/stack}" && cd "${STACK_DIR:-$REPO/var/stack}" && pwd)"
PG_PORT="${STACK_PG_PORT:-55432}"
REDIS_PORT="${STACK_REDIS_PORT:-56379}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$STACK_DIR/airflow}"
# shellcheck source=scripts/airflow-env.sh
source scripts/airflow-env.sh
# shellcheck source=scripts/proc-group.sh
source scripts/proc-group.sh
# shellcheck source=scripts/stack-env.sh
source scripts/stack-env.sh

LOGS="$STACK_DIR/logs" RUN="$STACK_DIR/run"
mkdir -p "$LOGS" "$RUN" "$STACK_DIR/redis"
pg_bin() { local b; b="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"; echo "${b:-/usr/bin}/$1"; }
AS_POSTGRES=()  # root may not run the server: the `postgres` account the package creates does
[ "$(id -u)" -ne 0 ] || AS_POSTGRES=(runuser -u postgres --)
for tool in "$(pg_bin postgres)" "$(pg_bin initdb)"; do
  [ -x "$tool" ] || { echo "stack: $tool missing: run scripts/install-system-deps.sh" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "stack: redis-server missing: run scripts/install-system-deps.sh" >&2; exit 1; }

log() { echo "stack: $*" >&2; }

start_service() {  # NAME: starts it in its own process group, output to logs/NAME.log
  local name="$1"
  case "$name" in
    postgres)
      GROUP_STOPSIG[postgres]=INT  # fast shutdown: clients are gone by then
      group_start postgres "${AS_POSTGRES[@]}" "$(pg_bin postgres)" -D "$STACK_DIR/postgres" -p "$PG_PORT" \
        -k "$STACK_DIR/postgres-socket" -c listen_addresses=127.0.0.1 ;;
    redis)
      group_start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STACK_DIR/redis" \
        --save "" --appendonly no --protected-mode yes ;;
    api-server)
      group_start api-server airflow api-server --host 127.0.0.1 --port "$AIRFLOW_PORT" --workers 1 ;;
    scheduler|dag-processor|triggerer)
      group_start "$name" airflow "$name" ;;
    worker-default)
      group_start worker-default env PIPELINES_WORKER_NAME=default airflow celery worker \
        --queues default --concurrency "${STACK_WORKER_CONCURRENCY:-1}" \
        --celery-hostname "default@%h" --skip-serve-logs ;;
    worker-heavy)
      group_start worker-heavy env PIPELINES_WORKER_NAME=heavy airflow celery worker \
        --queues "$PIPELINES_HEAVY_QUEUE" --concurrency "${STACK_WORKER_CONCURRENCY:-1}" \
        --celery-hostname "heavy@%h" --skip-serve-logs ;;
    *) log "unknown service $name"; return 1 ;;
  esac >>"$LOGS/$name.log" 2>&1
  echo "${GROUP_PID_OF[$name]}" >"$RUN/$name.pid"
}

stop_stack() {
  trap '' INT TERM
  log "stopping"
  group_stop api-server scheduler dag-processor triggerer worker-default worker-heavy
  group_stop redis postgres
  group_stop_all  # anything left, and strays that left their group
  rm -f "$RUN"/*.pid
}
trap 'stop_stack; exit 130' INT
trap 'stop_stack; exit 143' TERM

wait_for() {  # WHAT SECONDS CMD...: retries CMD until it succeeds
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "$what not ready after ${seconds}s"; return 1; fi
    sleep 1
  done
}

if [ "${#AS_POSTGRES[@]}" -gt 0 ] && ! "${AS_POSTGRES[@]}" test -x "$STACK_DIR"; then
  log "the postgres account cannot enter $STACK_DIR (a parent folder is private): set STACK_DIR elsewhere"
  exit 1
fi
# PostgreSQL: a cluster of our own (user airflow, trust on loopback only), DBs airflow and lineage.
if [ ! -f "$STACK_DIR/postgres/PG_VERSION" ]; then
  log "initdb $STACK_DIR/postgres"
  mkdir -p "$STACK_DIR/postgres"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$STACK_DIR/postgres"
  "${AS_POSTGRES[@]}" "$(pg_bin initdb)" -D "$STACK_DIR/postgres" -U airflow --auth=trust -E UTF8 \
    >"$LOGS/initdb.log" 2>&1 || { tail -n 20 "$LOGS/initdb.log"; exit 1; }
fi
mkdir -p "$STACK_DIR/postgres-socket"
[ "$(id -u)" -ne 0 ] || chown postgres:postgres "$STACK_DIR/postgres-socket"
log "postgres on 127.0.0.1:$PG_PORT, redis on 127.0.0.1:$REDIS_PORT"
start_service postgres
start_service redis
wait_for postgres 60 "$(pg_bin pg_isready)" -h 127.0.0.1 -p "$PG_PORT" -U airflow || { stop_stack; exit 1; }
wait_for redis 30 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping || { stop_stack; exit 1; }
for db in airflow lineage; do
  psql_cmd=("$(pg_bin psql)" -h 127.0.0.1 -p "$PG_PORT" -U airflow -d postgres -tAc)
  if [ -z "$("${psql_cmd[@]}" "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    "${psql_cmd[@]}" "CREATE DATABASE $db" >/dev/null
  fi
done

log "airflow db migrate (log: $LOGS/db-migrate.log)"
airflow db migrate >"$LOGS/db-migrate.log" 2>&1 || { tail -n 30 "$LOGS/db-migrate.log"; stop_stack; exit 1; }

AIRFLOW_SERVICES=(api-server scheduler dag-processor triggerer worker-default worker-heavy)
for name in "${AIRFLOW_SERVICES[@]}"; do start_service "$name"; done
cat >&2 <<MSG
stack: up. Airflow UI and REST API http://127.0.0.1:$AIRFLOW_PORT (CeleryExecutor; user admin,
       password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated unless set).
       Lineage store: $PIPELINES_LINEAGE_URL   Artifacts: $PIPELINES_HOME
       Logs: $LOGS/<service>.log   Follow a run: python scripts/airflow_progress.py retrain_adult
MSG

declare -A restarts=()
while :; do
  status=0
  group_wait_any || status=$?
  died="$GROUP_DIED"
  [ -n "$died" ] || continue
  name="${GROUP_NAMES[$died]}"
  group_forget "$died"
  rm -f "$RUN/$name.pid"
  case "$name" in
    postgres|redis)
      log "$name exited ($status): stopping the stack (see $LOGS/$name.log)"
      stop_stack; exit 1 ;;
  esac
  restarts[$name]=$(( ${restarts[$name]:-0} + 1 ))
  if [ "${restarts[$name]}" -gt "${STACK_MAX_RESTARTS:-5}" ]; then
    log "$name exited ($status) too often: stopping the stack (see $LOGS/$name.log)"
    stop_stack; exit 1
  fi
  log "$name exited ($status): restart ${restarts[$name]} in 5 s"
  sleep 5
  start_service "$name"
done
