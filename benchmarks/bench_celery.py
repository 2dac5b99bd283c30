"""Benchmark of one full retrain_adult run under the CeleryExecutor stack (scripts/stack.sh), next to
the LocalExecutor figures of benchmarks/results/dag.json (bench_dag.py).

Run by `make bench` (python benchmarks/bench_celery.py). Starts the stack as `make stack` does
(PostgreSQL, Redis, API server, scheduler, DAG processor, triggerer, a `default` and a `heavy`
Celery worker, on loopback), triggers one run over REST, and records: wall time from the trigger
to success, start-up time of the stack, each task's queue wait (queued → started: the time a task
waited for a free worker of its queue) and run time, and the peak summed RSS of every process the
stack started (sampled every second from /proc). Writes benchmarks/results/celery.json and
celery.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.deploy.stackctl import Stack  # noqa: E402
from tests.e2e.harness import DAG_ID  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
ORDER = ["ingest", "validate", "transform", "train", "evaluate", "is_blessed", "promote", "report"]


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return round((dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds(), 1)


def celery_run(root: Path, end: dt.date) -> dict:
    stack = Stack(root, end)
    peak = {"mib": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["mib"] = max(peak["mib"], _rss_mib(list(stack.processes())))
            stop.wait(1.0)

    try:
        stack.start()
        assert stack.api is not None
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        run_id = stack.api.trigger(end, {"span": end.isoformat()})
        state = stack.api.wait_run(run_id, timeout=2400)
        wall = time.perf_counter() - start
        tis = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")[
            "task_instances"]
    finally:
        stop.set()
        stack.stop()
        stack.cleanup()
    tasks = {}
    for ti in sorted(tis, key=lambda t: ORDER.index(t["task_id"]) if t["task_id"] in ORDER else 99):
        tasks[ti["task_id"]] = {
            "state": ti["state"], "queue": ti.get("queue"), "hostname": ti.get("hostname"),
            "queue_wait_s": _seconds(ti.get("queued_when"), ti.get("start_date")),
            "run_s": round(ti["duration"], 1) if ti.get("duration") is not None else None,
        }
    return {"celery_s": round(wall, 1), "celery_state": state,
            "celery_startup_s": round(stack.startup_seconds, 1),
            "celery_peak_rss_mib": round(peak["mib"], 1), "celery_tasks": tasks}


def write(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "celery.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    local = {}
    if (RESULTS / "dag.json").is_file():
        local = json.loads((RESULTS / "dag.json").read_text())
    lines = ["# CeleryExecutor benchmark (benchmarks/bench_celery.py)", "",
             f"{results['machine']}; measured {results['measured_at']}. One full run of "
             f"{DAG_ID}, triggered over REST, on the stack of `make stack` (PostgreSQL, Redis, "
             "a `default` and a `heavy` worker with concurrency 1 each).", "",
             "| executor | wall (trigger → success) | peak memory | measured |", "|---|---|---|---|",
             f"| CeleryExecutor (scripts/stack.sh) | {results['celery_s']} s | "
             f"{results['celery_peak_rss_mib']} MiB (every process of the stack) | "
             f"{results['measured_at']} |"]
    if "scheduler_s" in local:
        lines.append(f"| LocalExecutor on SQLite (bench_dag.py, real scheduler) | "
                     f"{local['scheduler_s']} s | {local.get('scheduler_peak_rss_mib', '-')} MiB "
                     f"(Airflow process trees) | {local.get('measured_at', '-')} |")
    lines += ["", f"Stack start-up before the trigger (initdb on first start, db migrate, 8 "
              f"services): {results['celery_startup_s']} s. Run state: {results['celery_state']}.",
              "", "| task | queue | worker | queue wait | run |", "|---|---|---|---|---|"]
    for task, t in results["celery_tasks"].items():
        wait = "-" if t["queue_wait_s"] is None else f"{t['queue_wait_s']} s"
        ran = "-" if t["run_s"] is None else f"{t['run_s']} s"
        worker = (t["hostname"] or "-").split("@")[0]
        lines.append(f"| {task} | {t['queue']} | {worker} | {wait} | {ran} |")
    lines += ["", "Queue wait is the time from queued to started: the Celery hand-off through "
              "Redis and a free worker of the task's queue. The two executors' runs were measured "
              "at different times on a shared 2-core machine; compare them as orders of magnitude."]
    (RESULTS / "celery.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    results = {"machine": f"{platform.node()} {os.cpu_count()} CPUs, Python "
                          f"{platform.python_version()}",
               "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="bench_celery_") as tmp:
        results.update(celery_run(Path(tmp), end))
    write(results)
    print((RESULTS / "celery.md").read_text())
    return 0 if results["celery_state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
