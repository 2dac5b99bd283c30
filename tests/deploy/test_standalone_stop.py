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


SIGNALS = {"SIGTERM": signal.SIGTERM, "Ctrl-C": signal.SIGINT}
COMPONENTS = ("airflow scheduler", "airflow triggerer", "airflow dag-processor")


def _as_in_a_terminal() -> None:
    """SIGINT handled by default, as a script started from a terminal has it. A pytest run from a
    background job (`nohup ... &`) ignores SIGINT, its children inherit that, and bash cannot trap
    a signal that was ignored when it started: the Ctrl-C case would test nothing but that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def standalones(tmp_path_factory):
    """One standalone per signal, started together so their start-ups overlap; each test signals
    its own. Whatever carries a marker at the end is killed."""
    started = {}
    try:
        for name in SIGNALS:
            root = tmp_path_factory.mktemp(f"standalone-{name}")
            port, mark = free_port(), new_mark()
            env = airflow_env(root / "airflow", root / "pipelines", port,
                              PIPELINES_TEST_MARK=mark, AIRFLOW_STOP_GRACE="30")
            with open(root / "standalone.log", "w") as log:
                script = subprocess.Popen(["bash", "scripts/airflow-standalone.sh"], env=env,
                                          cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=_as_in_a_terminal)
            started[name] = {"script": script, "port": port, "mark": mark,
                             "log": root / "standalone.log"}
        yield started
    finally:
        for s in started.values():
            if s["script"].poll() is None:
                s["script"].kill()
            kill_marked(s["mark"])


def _running(mark: str) -> dict[int, str]:
    """The marked processes once every component and at least 5 processes run (the triggerer
    and the executor's workers start after the API server answers); what runs after 120 s."""
    deadline = time.monotonic() + 120
    while True:
        started = marked(mark)
        commands = " ".join(started.values())
        if all(c in commands for c in COMPONENTS) and len(started) >= 5:
            return started
        if time.monotonic() > deadline:
            return started
        time.sleep(1)


@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_stops_every_airflow_process(standalones, name):
    sig, s = SIGNALS[name], standalones[name]
    script, port, mark, log = s["script"], s["port"], s["mark"], s["log"]
    deadline = time.monotonic() + 300
    while not _up(port):
        assert script.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "standalone's API server never answered"
        time.sleep(2)
    started = _running(mark)
    commands = " ".join(started.values())
    for component in COMPONENTS:
        assert component in commands, started  # the API server answered above
    assert len(started) >= 5, started
    script.send_signal(sig)  # what `kill` or the terminal's Ctrl-C does to the script
    assert script.wait(timeout=120) in (130, 143), log.read_text()
    left = {}
    for _ in range(10):  # a process may take a moment to disappear from /proc
        if not (left := marked(mark)):
            break
        time.sleep(1)
    assert not left, f"still running after {sig.name}: {left}"
