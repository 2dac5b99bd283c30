"""Real Airflow for the e2e tests and benchmarks/bench_dag.py: environment, services, REST client.

The environment comes from scripts/airflow-env.sh (one definition for the demo, the tests and the
benchmark), pointed at temporary homes and a free loopback port. ``AirflowServices`` starts the API
server, the scheduler and the DAG processor, each in its own process group, and stops exactly those
processes. ``Api`` talks to Airflow 3's REST API (/api/v2) with a JWT from the simple auth manager.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pipelines.config import REPO_ROOT

DAG_ID = "retrain_adult"
USER, PASSWORD = "admin", "e2e-secret"
TERMINAL = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_env(airflow_home: Path, pipelines_home: Path, port: int | None = None,
                **extra: str) -> dict[str, str]:
    """The environment of scripts/airflow-env.sh for these homes and this port."""
    base = {**os.environ, "AIRFLOW_HOME": str(airflow_home), "PIPELINES_HOME": str(pipelines_home),
            "AIRFLOW_PORT": str(port or free_port()), **extra}
    for key in [k for k in base if k.startswith("AIRFLOW__")]:
        base.pop(key)  # a developer's own Airflow settings must not leak into the test
    base.update(extra)
    out = subprocess.run(["bash", "-c", "source scripts/airflow-env.sh && env -0"], env=base,
                         cwd=REPO_ROOT, capture_output=True, check=True, timeout=60)
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    for key in ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"):
        env.setdefault(key, str(free_port()))  # 8793/8794 would clash with concurrent runs
    # One JWT secret and Fernet key for every process of this Airflow. Unset, each process that
    # starts before airflow.cfg exists (no `airflow db migrate` ran in a home whose DB is a copy)
    # makes its own: the API server then refuses the workers' tokens ("Invalid auth token") and
    # the triggerer cannot decrypt a deferred task's trigger.
    # Kept in the home, so every env built for the same home agrees.
    keys = Path(airflow_home) / "e2e-keys.json"
    if not keys.is_file():
        Path(airflow_home).mkdir(parents=True, exist_ok=True)
        keys.write_text(json.dumps({
            "AIRFLOW__API_AUTH__JWT_SECRET": base64.b64encode(os.urandom(32)).decode(),
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}))
    for key, value in json.loads(keys.read_text()).items():
        env.setdefault(key, value)
    passwords = Path(airflow_home) / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{USER}:admin"
    return env


_MIGRATE = ["airflow", "db", "migrate"]
_migrated_db: list[Path] = []  # a fresh SQLite DB that `airflow db migrate` made in this process


def migrate(env: dict[str, str], log: Path | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess:
    """`airflow db migrate` for real once per test process; a later fresh SQLite home gets a
    copy of that DB (the same schema and rows; saves a migration of the whole schema each time)."""
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "").split("?")[0]  # ?timeout=...
    fresh = url == f"sqlite:///{db}" and not db.exists()
    if fresh and _migrated_db and _migrated_db[0].is_file():
        shutil.copyfile(_migrated_db[0], db)
        if log is not None:
            Path(log).write_text(f"copied from {_migrated_db[0]} (migrated by airflow db migrate "
                                 "earlier in this test process)\n")
        return subprocess.CompletedProcess(_MIGRATE, 0, "", "")
    proc = _run(_MIGRATE, env, timeout, True, log)
    if fresh and not _migrated_db and db.is_file():
        template = Path(tempfile.mkdtemp(prefix="airflow-db-")) / "airflow.db"
        shutil.copyfile(db, template)
        atexit.register(shutil.rmtree, template.parent, True)
        _migrated_db.append(template)
    return proc


def run(cmd: list[str], env: dict[str, str], timeout: float = 600, check: bool = True,
        log: Path | None = None) -> subprocess.CompletedProcess:
    """Runs a command of the Airflow environment; its output goes to ``log`` when given.
    ``airflow db migrate`` of a fresh SQLite home goes through ``migrate``."""
    if cmd == _MIGRATE and check:
        return migrate(env, log, timeout)
    return _run(cmd, env, timeout, check, log)


def _run(cmd: list[str], env: dict[str, str], timeout: float, check: bool,
         log: Path | None) -> subprocess.CompletedProcess:
    if log is None:
        return subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=timeout, check=check)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n" + tail(log))
    return proc


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def stage(env: dict[str, str], end: dt.date, days: int = 7, config: str = "adult") -> None:
    """Stages a use case's sample data (its config's sample_data: local copy or PyPI wheel)."""
    run([shutil.which("pipelines", path=env["PATH"]) or "pipelines", "demo-data",
         str(REPO_ROOT / "configs" / f"{config}.yaml"), "--end", end.isoformat(),
         "--days", str(days)], env)


def corrupt_span(pipelines_home: Path, source: dt.date, day: dt.date) -> Path:
    """Writes span ``day`` as a copy of span ``source`` whose ages and sexes break the contract."""
    landing = Path(pipelines_home) / "landing" / "adult"
    lines = (landing / source.isoformat() / "part-00000.csv").read_text().splitlines()
    header = lines[0].split(",")
    age, sex = header.index("age"), header.index("sex")
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        cells[age], cells[sex] = "250", "Unknown"
        out.append(",".join(cells))
    path = landing / day.isoformat() / "part-00000.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path


class AirflowServices:
    """API server, scheduler and DAG processor on loopback; stops only what it started.

    ``triggerer=True`` also starts the triggerer, which deferred tasks need (deferrable sensors,
    Airflow 3's HITL ApprovalOperator): without it a deferred task waits forever.
    """

    NAMES = ("api-server", "scheduler", "dag-processor")

    def __init__(self, env: dict[str, str], log_dir: Path, triggerer: bool = False):
        self.env, self.log_dir = env, Path(log_dir)
        self.port = int(env["AIRFLOW_PORT"])
        self.names = self.NAMES + (("triggerer",) if triggerer else ())
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, timeout: float = 180) -> AirflowServices:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmds = {
            "api-server": ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(self.port),
                           "--workers", "1"],
            "scheduler": ["airflow", "scheduler"],
            "dag-processor": ["airflow", "dag-processor"],
            "triggerer": ["airflow", "triggerer"],
        }
        for name in self.names:
            log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed by the child
            self.procs[name] = subprocess.Popen(cmds[name], env=self.env, cwd=REPO_ROOT, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise AssertionError(f"airflow {name} exited {p.returncode}:\n"
                                         + tail(self.log_dir / f"{name}.log"))
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(2)
        raise AssertionError(f"the API server did not answer on {url} within {timeout:.0f}s")

    def explain(self, lines: int = 15) -> str:
        """The last lines of every service's log, for an assertion message."""
        return "\n".join(f"--- {n}\n{tail(self.log_dir / f'{n}.log', lines)}" for n in self.names)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        self.procs.clear()

    def __enter__(self) -> AirflowServices:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


LOCKED_RETRIES = 5  # Airflow answers 503 when SQLite is locked (e.g. POST /backfills): retry


class Api:
    """A small client of /api/v2 with a JWT token from the simple auth manager. A 503 (the
    metadata DB was locked, the request rolled back), and a GET that timed out or found no
    server, are retried after 2, 4, ... 10 s."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        token = self._call("POST", "/auth/token", {"username": USER, "password": PASSWORD},
                           auth=False)
        self.token = token["access_token"]

    def _call(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(LOCKED_RETRIES + 1):
            req = urllib.request.Request(self.base + path, data=data, headers=headers,
                                         method=method)
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    text = resp.read().decode()
                return json.loads(text) if text else None
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode()
                if exc.code == 503 and attempt < LOCKED_RETRIES:
                    time.sleep(2 * (attempt + 1))  # SQLite was locked; Airflow rolled back
                    continue
                raise AssertionError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
            except (TimeoutError, urllib.error.URLError):
                if method != "GET" or attempt == LOCKED_RETRIES:  # only a read is safe to repeat
                    raise
                time.sleep(2 * (attempt + 1))  # an API server slow under load: ask again
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._call("PATCH", path, body)

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(f"/api/v2/dags/{dag_id}")
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def trigger(self, day: dt.date, conf: dict, dag_id: str = DAG_ID) -> str:
        body = {"logical_date": f"{day.isoformat()}T00:00:00Z", "conf": conf}
        return self.post(f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def run_state(self, run_id: str, dag_id: str = DAG_ID) -> str:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_run(self, run_id: str, timeout: float = 900, dag_id: str = DAG_ID) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.run_state(run_id, dag_id)) not in TERMINAL:
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(3)
        return state

    def task_states(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, str | None]:
        tis = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}

    def xcom(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> Any:
        entry = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                         "/xcomEntries/return_value?deserialize=true")
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value


def production_alias(pipelines_home: Path, pipeline: str = "adult") -> Any:
    """The registry's alias file as written by pipelines.registry (None before any promotion)."""
    path = Path(pipelines_home) / "registry" / pipeline / "aliases.json"
    return json.loads(path.read_text()) if path.is_file() else None


def dag_run_summary(env: dict[str, str], dag_id: str) -> dict:
    """The latest run of ``dag_id`` in the Airflow DB (scripts/airflow_run_summary.py --json)."""
    out = run([sys.executable, "scripts/airflow_run_summary.py", dag_id, "--json"], env,
              check=False)
    if not out.stdout.strip():
        raise AssertionError(f"no summary of {dag_id}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)
