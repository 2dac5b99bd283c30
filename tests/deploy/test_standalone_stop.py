"""`make airflow` (scripts/airflow-standalone.sh) stops every process it started on SIGTERM and Ctrl-C.

Airflow standalone starts the API server, scheduler, DAG processor, triggerer and the executor's
workers; before the fix a SIGTERM to it left them running. The script is started with a marker in
its environment that every descendant inherits; after the signal none of them may be alive.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request

import pytest

from pipelines.config import REPO_ROOT
from tests.deploy.procs import kill_marked, marked, new_mark
from tests.e2e.harness import airflow_env, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health",
                                    timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_stops_every_airflow_process(tmp_path, sig):
    port, mark = free_port(), new_mark()
    env = airflow_env(tmp_path / "airflow", tmp_path / "pipelines", port,
                      PIPELINES_TEST_MARK=mark, AIRFLOW_STOP_GRACE="30")
    log = open(tmp_path / "standalone.log", "w")  # noqa: SIM115 - closed below
    script = subprocess.Popen(["bash", "scripts/airflow-standalone.sh"], env=env, cwd=REPO_ROOT,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _up(port):
            assert script.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "standalone's API server never answered"
            time.sleep(3)
        time.sleep(10)  # the triggerer and the executor workers start after the API server
        started = marked(mark)
        commands = " ".join(started.values())
        for component in ("airflow scheduler", "airflow triggerer", "airflow dag-processor"):
            assert component in commands, started  # the API server answered above
        assert len(started) >= 5, started
        script.send_signal(sig)  # what `kill` or the terminal's Ctrl-C does to the script
        assert script.wait(timeout=120) in (130, 143), (tmp_path / "standalone.log").read_text()
        left = {}
        for _ in range(10):  # a process may take a moment to disappear from /proc
            if not (left := marked(mark)):
                break
            time.sleep(1)
        assert not left, f"still running after {sig.name}: {left}"
    finally:
        if script.poll() is None:
            script.kill()
        kill_marked(mark)
        log.close()
