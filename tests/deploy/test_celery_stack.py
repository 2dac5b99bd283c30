"""The CeleryExecutor deployment on this machine: scripts/stack.sh (`make stack`) for real.

stack.sh starts PostgreSQL and Redis from Debian's packages on loopback (own data directories under
the test's tmp folder, free ports), then Airflow's API server, scheduler, DAG processor, triggerer
and two Celery workers (queues `default` and `heavy`). The test triggers retrain_adult through the
REST API, kills the heavy worker with SIGKILL (its whole process group: the worker, its pool and the
task) while transform runs, and expects a retried, successful run: each heavy task (transform, train,
evaluate) on the heavy worker, the others on the default worker, nothing half-written, the lineage
store on the same PostgreSQL. Then SIGTERM to stack.sh must leave no process it started.

One DAG run (about 4 minutes of work on 2 cores, plus the heartbeat timeout of the killed try).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.deploy.stackctl import SERVICES, Stack
from tests.e2e.harness import DAG_ID, Api, run, tail

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TODAY = dt.datetime.now(dt.UTC).date()
END = TODAY - dt.timedelta(days=2)
HEAVY = {"transform", "train", "evaluate"}
DEFAULT = {"ingest", "validate", "is_blessed", "report"}
HEARTBEAT_TIMEOUT = 60  # seconds without a heartbeat before the scheduler fails the killed try


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("celery-stack"), END,
              AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT))
    try:
        yield s.start()
    finally:
        s.stop()
        s.cleanup()


def _task_instances(api: Api, run_id: str) -> dict[str, dict]:
    tis = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {t["task_id"]: t for t in tis}


def _kill_heavy_worker(stack) -> list[str]:
    """SIGKILL to the heavy worker's process group and to any process of it that left the group."""
    pgid = stack.pid("worker-heavy")
    victims = [c for c in stack.processes().values() if "--queues heavy" in c]
    os.killpg(pgid, signal.SIGKILL)
    for pid, cmd in stack.processes().items():
        if "--queues heavy" in cmd:
            os.kill(pid, signal.SIGKILL)
    return victims


@pytest.fixture(scope="module")
def killed_run(stack):
    """One triggered run; the heavy worker is killed -9 while transform runs on it."""
    api = stack.api
    started = time.monotonic()
    run_id = api.trigger(END, {"window": 7})
    deadline = time.monotonic() + 1200
    while True:
        ti = _task_instances(api, run_id).get("transform", {})
        if ti.get("state") == "running" and ti.get("try_number") == 1:
            break
        state = api.run_state(run_id)
        assert state not in ("success", "failed"), f"run {state} before transform ran\n" + \
            stack.explain()
        assert time.monotonic() < deadline, "transform never started\n" + stack.explain()
        time.sleep(2)
    # A few seconds into the try (its imports, then the Beam/TFT job): transform takes 10-20 s on
    # this machine, so a longer wait can miss it and kill train instead (a CI run on 11-24 did).
    time.sleep(3)
    victims = _kill_heavy_worker(stack)
    ti = _task_instances(api, run_id)["transform"]
    assert ti["try_number"] == 1 and ti["state"] == "running", \
        f"transform's first try was no longer running when the worker was killed: {ti}"
    killed_at = time.monotonic()
    final = api.wait_run(run_id, timeout=2400)
    return {"run_id": run_id, "state": final, "victims": victims,
            "wall_seconds": time.monotonic() - started,
            "recovery_seconds": time.monotonic() - killed_at,
            "tis": _task_instances(api, run_id)}


def test_killed_heavy_worker_ends_in_a_retried_successful_run(stack, killed_run):
    assert killed_run["victims"], "no heavy worker process was found to kill"
    assert killed_run["state"] == "success", stack.explain()
    tis = killed_run["tis"]
    assert tis["transform"]["try_number"] >= 2, tis["transform"]  # the killed try, then a retry
    assert {t: tis[t]["state"] for t in HEAVY | DEFAULT} == dict.fromkeys(HEAVY | DEFAULT, "success")
    print(f"\nCelery stack: startup {stack.startup_seconds:.0f} s, DAG run with a killed "
          f"worker {killed_run['wall_seconds']:.0f} s (recovery {killed_run['recovery_seconds']:.0f} s)")


def test_heavy_tasks_ran_on_the_heavy_worker(killed_run):
    tis = killed_run["tis"]
    for task in HEAVY:
        assert tis[task]["queue"] == "heavy", tis[task]
        assert tis[task]["hostname"].startswith("heavy@"), tis[task]
    for task in DEFAULT:
        assert tis[task]["queue"] == "default", tis[task]
        assert tis[task]["hostname"].startswith("default@"), tis[task]


def test_nothing_half_written(stack, killed_run):
    """The transform the killed try was writing: one complete artifact; what the killed writer
    left is a hidden temporary folder no one holds (swept by the next publish), never a final."""
    api, home = stack.api, stack.root / "pipelines"
    final = Path(api.xcom(killed_run["run_id"], "transform")["transform_uri"])
    result = json.loads((final / "transform.json").read_text())  # the step's own record
    siblings = [p for p in final.parent.iterdir() if not p.name.startswith(".")]
    assert siblings == [final], siblings  # no second, partial transform beside it
    from pipelines.hashing import sha256_file

    data = [o for o in result["outputs"] if o["kind"] == "TransformedExamples"]
    assert len(data) == 2  # train and eval, each whole: its bytes hash to the recorded sha256
    for out in data:
        assert sha256_file(Path(out["uri"])) == out["sha256"]
    for tmp in final.parent.glob(".tmp-*"):
        if tmp.suffix == ".lock":
            continue
        with open(tmp.with_name(tmp.name + ".lock"), "a") as lock:  # its writer is dead
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not (home / "lineage.db").exists()  # the lineage store is the stack's PostgreSQL


def test_lineage_store_on_the_stack_postgresql(stack, killed_run):
    env = {**stack.env, "PIPELINES_LINEAGE_URL": stack.lineage_url}
    out = run(["pipelines", "--home", str(stack.root / "pipelines"), "lineage", "runs", "adult",
               "--json"], env)
    runs = json.loads(out.stdout)["runs"]
    assert killed_run["run_id"] in json.dumps(runs), runs


def test_sigterm_stops_every_process_of_the_stack(stack, killed_run):
    """Runs last (module order): stops the stack as Ctrl-C would and checks nothing is left."""
    assert stack.proc.poll() is None
    pids = {n: stack.pid(n) for n in SERVICES}
    assert len(set(pids.values())) == len(SERVICES)
    assert stack.stop() == 143, tail(stack.log_path)
    left = {}
    for _ in range(10):
        if not (left := stack.processes()):
            break
        time.sleep(1)
    assert not left, f"still running after SIGTERM: {left}"
