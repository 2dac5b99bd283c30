"""Benchmark of the retraining DAG: DagBag parse time, one full run via `airflow dags test`, and one
full run through the real scheduler (API server + scheduler + DAG processor, triggered over REST).

Run by `make bench` (python benchmarks/bench_dag.py [--skip-scheduler]). Writes
benchmarks/results/dag.json and dag.md. Wall time is measured around the run; peak memory is the
largest resident set of any one child process (``RUSAGE_CHILDREN.ru_maxrss``, in MiB) and, for the
scheduler, the peak summed RSS of the Airflow process trees sampled every second from /proc.
Targets on the 2-core machine: parse < 0.5 s, in-process run < 90 s, scheduler run < 150 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.harness import (  # noqa: E402
    DAG_ID,
    AirflowServices,
    Api,
    airflow_env,
    run,
    stage,
)

RESULTS = REPO / "benchmarks" / "results"
TARGETS = {"parse_s": 0.5, "dags_test_s": 90.0, "scheduler_s": 150.0}


def parse_time(env: dict[str, str]) -> dict:
    """DagBag parse of dags/ in a fresh interpreter, Airflow import excluded: first parse (pays the
    pipelines.config/pydantic imports) and best of 3."""
    code = ("import time; from airflow.dag_processing.dagbag import DagBag\n"
            "times = []\n"
            "for _ in range(3):\n"
            f"    t = time.perf_counter(); b = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
            "    times.append(time.perf_counter() - t)\n"
            "assert not b.import_errors, b.import_errors\n"
            "print(times[0], min(times))")
    out = run([sys.executable, "-c", code], env)
    first, best = (float(x) for x in out.stdout.strip().splitlines()[-1].split())
    return {"parse_s": round(first, 3), "parse_best_s": round(best, 3)}


def _tree_rss_mib(pids: list[int]) -> float:
    """Summed RSS of these processes and all their descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(stat[1]), []).append(int(d.name))
            rss[int(d.name)] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    seen, stack = set(), list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, []))
    return sum(rss.get(p, 0) for p in seen) / 2**20


def dags_test(root: Path, end: dt.date) -> dict:
    env = airflow_env(root / "airflow", root / "pipelines")
    stage(env, end)
    run(["airflow", "db", "migrate"], env, log=root / "db-migrate.log")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = run(["airflow", "dags", "test", DAG_ID, end.isoformat()], env, check=False,
               timeout=1800, log=root / "dags-test.log")
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = run([sys.executable, "scripts/airflow_run_summary.py", DAG_ID, "--json"], env,
              check=False)
    summary = json.loads(out.stdout)
    return {"dags_test_s": round(wall, 1), "dags_test_rc": proc.returncode,
            "dags_test_state": summary["state"], "dags_test_tasks": summary["tasks"],
            "dags_test_peak_rss_mib": round(max(peak, before) / 1024, 1)}


def unscheduled_configs(root: Path) -> Path:
    """A copy of configs/ without schedules, so the only run is the one the benchmark triggers."""
    import yaml

    out = root / "configs"
    out.mkdir(parents=True)
    for path in (REPO / "configs").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        raw.setdefault("schedule", {})["cron"] = None
        (out / path.name).write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def scheduler_run(root: Path, end: dt.date) -> dict:
    env = airflow_env(root / "airflow", root / "pipelines",
                      PIPELINES_CONFIG_DIR=str(unscheduled_configs(root)))
    stage(env, end)
    run(["airflow", "db", "migrate"], env, log=root / "db-migrate.log")
    services = AirflowServices(env, root / "logs")
    peak = {"mib": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pids = [p.pid for p in services.procs.values()]
            peak["mib"] = max(peak["mib"], _tree_rss_mib(pids))
            stop.wait(1.0)

    try:
        t0 = time.perf_counter()
        services.start()
        api = Api(services.port)
        api.wait_for_dag(DAG_ID)
        startup = time.perf_counter() - t0
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run_id = api.trigger(end, {"span": end.isoformat()})
        api.patch(f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        start = time.perf_counter()
        state = api.wait_run(run_id, timeout=1800)
        wall = time.perf_counter() - start
        tasks = api.task_states(run_id)
    finally:
        stop.set()
        services.stop()
    return {"scheduler_s": round(wall, 1), "scheduler_state": state, "scheduler_tasks": tasks,
            "scheduler_startup_s": round(startup, 1),
            "scheduler_peak_rss_mib": round(peak["mib"], 1)}


def write(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dag.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    rows = [
        ("DagBag parse of dags/ (first, in a fresh interpreter)", "parse_s", "s", None),
        ("one full run, `airflow dags test`", "dags_test_s", "s", "dags_test_peak_rss_mib"),
        ("one full run, real scheduler (REST trigger → success)", "scheduler_s", "s",
         "scheduler_peak_rss_mib"),
    ]
    lines = ["# DAG benchmark (benchmarks/bench_dag.py)", "",
             f"{results['machine']}; measured {results['measured_at']}.", "",
             "| what | wall | target | peak memory |", "|---|---|---|---|"]
    for label, key, unit, mem in rows:
        if key in results:
            peak = f"{results[mem]} MiB" if mem and mem in results else "-"
            lines.append(f"| {label} | {results[key]} {unit} | < {TARGETS[key]} {unit} | {peak} |")
    if "scheduler_startup_s" in results:
        lines += ["", f"Services start-up before the trigger (not in the run time): "
                  f"{results['scheduler_startup_s']} s. Scheduler peak memory is the summed RSS of "
                  "the API server, scheduler and DAG processor trees (task processes included)."]
    (RESULTS / "dag.md").write_text("\n".join(lines) + "\n")


def merge_previous(results: dict, skipped: list[str]) -> dict:
    """Keeps the recorded numbers of the parts skipped this time."""
    path = RESULTS / "dag.json"
    if not skipped or not path.is_file():
        return results
    old = json.loads(path.read_text())
    kept = {k: v for k, v in old.items() if any(k.startswith(p) for p in skipped)}
    return {**kept, **results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-scheduler", action="store_true")
    parser.add_argument("--skip-dags-test", action="store_true")
    args = parser.parse_args()
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    results = {"machine": f"{platform.node()} {os.cpu_count()} CPUs, Python "
                          f"{platform.python_version()}",
               "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "targets": TARGETS}
    with tempfile.TemporaryDirectory(prefix="bench_dag_") as tmp:
        root = Path(tmp)
        env = airflow_env(root / "parse", root / "parse")
        results.update(parse_time(env))
        if not args.skip_dags_test:
            results.update(dags_test(root / "dags_test", end))
        if not args.skip_scheduler:
            results.update(scheduler_run(root / "scheduler", end))
    skipped = (["scheduler"] if args.skip_scheduler else []) + (
        ["dags_test"] if args.skip_dags_test else [])
    results = merge_previous(results, skipped)
    write(results)
    print(json.dumps(results, indent=2, sort_keys=True))
    ok = all(results.get(k, 0) < v for k, v in TARGETS.items())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
