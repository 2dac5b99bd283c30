"""scripts/stack.sh driven from Python: for tests/deploy/test_celery_stack.py and
benchmarks/bench_celery.py. Starts the script on free loopback ports with its data under a temporary
folder, waits for the API server, and stops it (SIGTERM, as Ctrl-C would); every process it started
carries a marker in its environment (tests/deploy/procs.py), so nothing can be left behind unseen.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import REPO_ROOT
from tests.deploy.procs import kill_marked, marked, new_mark
from tests.e2e.harness import DAG_ID, Api, airflow_env, free_port, stage, tail

SERVICES = ("postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer",
            "worker-default", "worker-heavy")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health",
                                    timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


class Stack:
    """One scripts/stack.sh run; ``env`` is the environment its services see."""

    def __init__(self, root: Path, end, **extra_env: str):
        self.root = Path(root)
        # PostgreSQL runs as the `postgres` account, which cannot enter pytest's private tmp dirs
        self.dir = Path(tempfile.mkdtemp(prefix="celery-stack-"))
        self.dir.chmod(0o755)
        self.mark, self.port = new_mark(), free_port()
        configs = self.root / "configs"  # adult only, unscheduled: the only run is triggered
        configs.mkdir(parents=True, exist_ok=True)
        raw = yaml.safe_load((REPO_ROOT / "configs" / "adult.yaml").read_text())
        raw.setdefault("schedule", {})["cron"] = None
        (configs / "adult.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        self.env = airflow_env(
            self.root / "airflow", self.root / "pipelines", self.port,
            PIPELINES_CONFIG_DIR=str(configs), STACK_DIR=str(self.dir),
            STACK_PG_PORT=str(free_port()), STACK_REDIS_PORT=str(free_port()),
            STACK_ENV_FILE=str(self.root / "no.env"), PIPELINES_TEST_MARK=self.mark,
            AIRFLOW_STOP_GRACE="30", AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            **extra_env)
        self.env.pop("PIPELINES_LINEAGE_URL", None)  # stack.sh puts it on its PostgreSQL
        self.end = end
        self.logs, self.run = self.dir / "logs", self.dir / "run"
        self.log_path = self.root / "stack.log"
        self.proc: subprocess.Popen | None = None
        self.api: Api | None = None
        self.startup_seconds = 0.0

    @property
    def lineage_url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.env['STACK_PG_PORT']}/lineage"

    def start(self, timeout: float = 600) -> Stack:
        stage(self.env, self.end)
        started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(["bash", "scripts/stack.sh"], env=self.env,
                                         cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while not healthy(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(f"stack.sh exited {self.proc.returncode}:\n"
                                     + tail(self.log_path))
            if time.monotonic() > deadline:
                raise AssertionError(f"stack not up in {timeout:.0f} s:\n" + tail(self.log_path))
            time.sleep(3)
        self.startup_seconds = time.monotonic() - started
        self.api = Api(self.port)
        self.api.wait_for_dag(DAG_ID, timeout=300)
        self.api.patch(f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        return self

    def pid(self, service: str) -> int:
        """The process group of a service (stack.sh's run/<service>.pid)."""
        return int((self.run / f"{service}.pid").read_text())

    def processes(self) -> dict[int, str]:
        return marked(self.mark)

    def explain(self) -> str:
        return "\n".join(f"--- {n}\n{tail(self.logs / f'{n}.log', 12)}" for n in SERVICES
                         if (self.logs / f"{n}.log").exists())

    def stop(self, timeout: float = 180) -> int | None:
        """SIGTERM to stack.sh (Ctrl-C or `kill`); returns its exit status."""
        status = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        elif self.proc is not None:
            status = self.proc.returncode
        return status

    def cleanup(self) -> dict[int, str]:
        """Last resort after stop(): whatever still carries the marker (empty when stack.sh
        stopped everything), then the data folder."""
        left = kill_marked(self.mark)
        shutil.rmtree(self.dir, ignore_errors=True)
        return left

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self.cleanup()
