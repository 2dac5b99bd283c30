"""What a reused step's process imports (issue 11 item 4: a reused step returns in under a second).

A `pipelines <step>` process whose inputs are unchanged only checks its marker and records its
lineage; the heavy libraries are imported only where they do work: the ML stack (TensorFlow, Beam,
pandas, Great Expectations) by a step that computes, SQLAlchemy for another store than the existing
local SQLite file (or to create it), the OpenLineage client when OpenLineage is configured. Checked
on sys.modules in a fresh interpreter, not on time (benchmarks/results/reuse.md has the times).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from pipelines.config import REPO_ROOT

HEAVY = ("tensorflow", "apache_beam", "tensorflow_transform", "pandas", "numpy",
         "great_expectations", "sqlalchemy", "openlineage.client", "airflow")


def _imported(code: str, cwd, env_extra: dict | None = None) -> dict:
    """Runs ``code`` in a fresh interpreter; returns its JSON answer (it prints one)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "HOME": str(cwd),
           "TF_USE_LEGACY_KERAS": "1", **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_cli_imports_nothing_heavy(tmp_path):
    found = _imported(f"""
        import json, sys
        import pipelines.cli, pipelines.runner, pipelines.lineage
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """, tmp_path)
    assert found == []


RECORD_A_STEP = """
    import json, sys
    from pathlib import Path
    from pipelines import runner
    from pipelines.config import load_config
    from pipelines.context import RunContext
    from tests.lineage import fake_steps
    runner.STEPS.update(fake_steps.STEPS)
    cfg = load_config(Path({config!r}))
    home = Path({home!r})
    snap = runner.run_step("ingest", cfg, home, RunContext(run_id="r"), files=[{landing!r}])
    print(json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""


def test_a_recorded_step_on_an_existing_store_imports_nothing_heavy(tmp_path):
    """The second process on a store records through sqlite3 and writes OpenLineage lines
    itself; the events and rows are there as from the first (SQLAlchemy, client-free) one."""
    # the process runs in a checkout without an origin (else the OpenLineage client would add its
    # source-code facet and so emit), wherever tmp_path lives
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]\n\tbare = false\n")
    landing = tmp_path / "landing" / "2026-11-19" / "part-0.csv"
    landing.parent.mkdir(parents=True)
    landing.write_text("1,2026-11-19,x\n2,2026-11-19,y\n")
    code = RECORD_A_STEP.format(config=str(REPO_ROOT / "configs" / "adult.yaml"),
                                home=str(tmp_path / "home"), landing=str(landing), heavy=HEAVY)
    first = _imported(code, tmp_path)
    assert first == ["sqlalchemy"]  # the first write creates the store's tables
    again = _imported(code, tmp_path)
    assert again == []
    events = (tmp_path / "home" / "openlineage" / "events.jsonl").read_text().splitlines()
    assert [json.loads(e)["eventType"] for e in events] == ["START", "COMPLETE"] * 2
    import sqlite3

    with sqlite3.connect(tmp_path / "home" / "lineage.db") as conn:
        assert conn.execute("SELECT step, status FROM executions").fetchall() == [
            ("ingest", "completed")] * 2
        assert conn.execute("SELECT count(*) FROM chain_records").fetchone() == (4,)
    # configured OpenLineage (here a file transport elsewhere): the client emits, as before
    target = tmp_path / "elsewhere.jsonl"
    configured = _imported(code, tmp_path, {"OPENLINEAGE__TRANSPORT__TYPE": "file",
                                            "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": str(target),
                                            "OPENLINEAGE__TRANSPORT__APPEND": "true"})
    assert configured == ["openlineage.client"]
    assert len(target.read_text().splitlines()) == 2
    assert os.path.getsize(tmp_path / "home" / "openlineage" / "events.jsonl") > 0
