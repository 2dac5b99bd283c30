"""The lineage store records every execution, its artifacts and its outcome (synthetic steps)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from pipelines import runner
from pipelines.context import RunContext
from pipelines.errors import DataRejected, NotPromoted
from pipelines.hashing import sha256_file
from pipelines.lineage.store import Artifact, Event, Execution, get_engine
from tests.lineage.conftest import run_fake_chain
from tests.lineage.fake_steps import FAILED_EXPECTATION

pytestmark = pytest.mark.usefixtures("fake_steps_wired")


def rows(home, model):
    with Session(get_engine(home)) as s:
        return [r.to_dict() for r in s.scalars(select(model).order_by(model.id))]


def test_every_step_is_recorded_with_its_context(adult_cfg, store_home, landing_files):
    done = run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="run-1",
                          dag_id="retrain_adult", dag_run_id="scheduled__2026-11-20",
                          try_number=2)
    execs = rows(store_home, Execution)
    assert [x["step"] for x in execs] == ["ingest", "validate", "transform", "train", "evaluate",
                                          "promote"]
    for x in execs:
        assert x["status"] == "completed" and x["ended"] >= x["started"]
        assert (x["pipeline"], x["run_id"], x["dag_id"], x["dag_run_id"], x["try_number"],
                x["triggered_by"]) == ("adult", "run-1", "retrain_adult",
                                       "scheduled__2026-11-20", 2, "test")
        assert x["config_sha256"] == adult_cfg.sha256
        assert set(x["code_version"]) >= {"git_sha", "dirty", "package_version"}
    train = execs[3]
    assert train["parameters"]["started_on"] == "2026-11-20"  # dates made JSON-safe
    assert execs[5]["summary"]["version"] == 1 and execs[5]["summary"]["promoted"] is True
    assert "inputs" not in execs[5]["summary"]
    # the landing files are recorded with the bytes ingest read
    sources = [a for a in rows(store_home, Artifact) if a["kind"] == "SourceFile"]
    assert {(a["uri"], a["sha256"], a["size"]) for a in sources} == {
        (f, sha256_file(f), len(open(f, "rb").read())) for f in landing_files}
    assert done["promote"]["registry_uri"]


def test_artifacts_are_shared_between_steps_not_copied(adult_cfg, store_home, landing_files):
    run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="run-1")
    run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="run-2")  # same bytes again
    arts = rows(store_home, Artifact)
    assert len({(a["uri"], a["sha256"]) for a in arts}) == len(arts)
    snapshot = next(a for a in arts if a["kind"] == "Snapshot")
    with Session(get_engine(store_home)) as s:
        uses = s.execute(select(Execution.step, Event.type).join(Event)
                         .where(Event.artifact_id == snapshot["id"])).all()
    # written by ingest, read by validate, transform and evaluate, in both runs
    assert sorted(uses) == sorted([("ingest", "output"), ("validate", "input"),
                                   ("transform", "input"), ("evaluate", "input")] * 2)
    kinds = {a["kind"] for a in arts}
    assert {"TransformGraph", "TransformedExamples", "Model", "Evaluation",
            "ModelVersion", "ValidationResult"} <= kinds  # snake_case kinds normalised


def test_rejected_data_is_recorded_with_its_failures(adult_cfg, store_home, landing_files):
    ctx = RunContext(run_id="bad-run", triggered_by="schedule")
    snap = runner.run_step("ingest", adult_cfg, store_home, ctx, files=landing_files)
    with pytest.raises(DataRejected):
        runner.run_step("validate", adult_cfg, store_home, ctx, snapshot_uri=snap["uri"],
                        reject=True)
    x = rows(store_home, Execution)[-1]
    assert x["status"] == "rejected" and FAILED_EXPECTATION in x["error"]
    assert x["summary"]["failures"] == [FAILED_EXPECTATION]
    kinds = {a["kind"] for a in rows(store_home, Artifact)}
    assert "ValidationResult" in kinds  # what the rejected step wrote is in the graph


def test_not_promoted_and_crashes_are_recorded_then_raised(adult_cfg, store_home, landing_files):
    with pytest.raises(NotPromoted):
        run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="r", blessed=False)
    promote = rows(store_home, Execution)[-1]
    assert (promote["step"], promote["status"]) == ("promote", "not_promoted")
    assert promote["summary"]["reasons"] == ["not blessed"]
    with pytest.raises(RuntimeError, match="disk full"):
        runner.run_step("boom", adult_cfg, store_home, RunContext(run_id="r"), snapshot_uri="x")
    boom = rows(store_home, Execution)[-1]
    assert boom["status"] == "failed" and boom["error"] == (
        "RuntimeError: disk full while writing the transform")
    assert boom["ended"] is not None


def test_a_killed_step_stays_running_with_no_half_graph(adult_cfg, store_home, landing_files):
    ctx = RunContext(run_id="killed-run")
    snap = runner.run_step("ingest", adult_cfg, store_home, ctx, files=landing_files)
    code = textwrap.dedent(f"""
        from pathlib import Path
        from pipelines import runner
        from pipelines.context import RunContext
        from pipelines.config import load_config
        from tests.lineage import fake_steps
        runner.STEPS.update(fake_steps.STEPS)
        cfg = load_config("configs/adult.yaml")
        runner.run_step("killed", cfg, Path({str(store_home)!r}), RunContext(run_id="killed-run"),
                        snapshot_uri={snap['uri']!r})
    """)
    from pipelines.config import REPO_ROOT

    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    killed = rows(store_home, Execution)[-1]
    assert (killed["step"], killed["status"], killed["ended"]) == ("killed", "running", None)
    with Session(get_engine(store_home)) as s:
        assert s.scalar(select(func.count()).select_from(Event)
                        .where(Event.execution_id == killed["id"])) == 0


def test_a_recording_failure_never_hides_the_step_error(adult_cfg, store_home, monkeypatch):
    from pipelines.lineage.record import ExecutionRecord

    def broken(*args, **kwargs):
        raise OSError("database is locked")

    monkeypatch.setattr(ExecutionRecord, "_write_graph", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        runner.run_step("boom", adult_cfg, store_home, RunContext(run_id="r"), snapshot_uri="x")
    assert rows(store_home, Execution)[-1]["status"] == "running"


def test_parameters_and_summary_are_json(adult_cfg, store_home, landing_files):
    """What a step was called with and what it answered, read back from the store's raw columns
    (as any SQL client or a later version of this code would) with their actual values."""
    done = run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="run-1")
    with get_engine(store_home).connect() as conn:
        stored = {step: (json.loads(params), json.loads(summary)) for step, params, summary in
                  conn.execute(text("SELECT step, parameters, summary FROM executions"))}
    snapshot = done["ingest"]["uri"]
    model = done["train"]["model_uri"]
    assert {step: params for step, (params, _) in stored.items()} == {
        "ingest": {"files": landing_files, "span": "2026-11-19"},
        "validate": {"snapshot_uri": snapshot},
        "transform": {"snapshot_uris": [snapshot]},
        "train": {"transform_uri": done["transform"]["transform_uri"],
                  "started_on": "2026-11-20", "seed": 1},
        "evaluate": {"model_uri": model, "snapshot_uris": [snapshot], "blessed": True,
                     "baseline_uri": None},
        "promote": {"model_uri": model, "evaluation_uri": done["evaluate"]["evaluation_uri"],
                    "version": 1},
    }
    for step, (_, summary) in stored.items():  # the result, less its artifact lists
        assert summary == {k: v for k, v in done[step].items() if k not in ("inputs", "outputs")}
    assert stored["evaluate"][1]["blessed"] is True
    assert stored["evaluate"][1]["reasons"] == ["overall AUC 0.910 >= 0.900"]
    assert stored["promote"][1]["version"] == 1 and stored["promote"][1]["previous_version"] is None
    assert stored["ingest"][1]["rows"] == {"total": 10}


def test_an_unreachable_store_stops_the_step_with_a_clear_error(adult_cfg, store_home,
                                                                 monkeypatch):
    from pipelines.lineage.store import LineageError, dispose_engines

    calls = []
    monkeypatch.setattr(runner, "step_function", lambda step: lambda *a, **k: calls.append(a))
    monkeypatch.setenv("PIPELINES_LINEAGE_URL", "postgresql+psycopg2://nobody:secret@127.0.0.1:9/x")
    dispose_engines()
    with pytest.raises(LineageError, match="PIPELINES_LINEAGE_URL") as err:
        runner.run_step("boom", adult_cfg, store_home, RunContext(), snapshot_uri="x")
    assert "secret" not in str(err.value) and calls == []
    dispose_engines()


def _dump(home) -> dict[str, list[tuple]]:
    """Every table of a store as stored (raw column text), without what differs between two
    writes of the same chain: times, OpenLineage run ids and the chain hashes made from them."""
    import sqlite3

    from pipelines import store as artifact_store

    skip = {"started", "ended", "created", "recorded", "openlineage_run_id", "content_sha256",
            "prev_sha256", "record_sha256", "head_sha256"}
    out = {}
    with sqlite3.connect(artifact_store.lineage_db(home)) as conn:
        for table in ("executions", "artifacts", "events", "chain_records", "chain_heads"):
            cur = conn.execute(f"SELECT * FROM {table} ORDER BY 1")
            names = [c[0] for c in cur.description]
            out[table] = [tuple(v for n, v in zip(names, row, strict=True) if n not in skip)
                          for row in cur]
        out["times"] = [tuple(re.sub("[0-9a-f]", "9", v) for v in row) for row in conn.execute(
            "SELECT started, ifnull(ended, ''), openlineage_run_id FROM executions UNION ALL "
            "SELECT created, '', '' FROM artifacts UNION ALL "
            "SELECT recorded, '', '' FROM chain_records")]
    return out


def test_the_sqlite_writer_stores_what_sqlalchemy_stores(adult_cfg, store_home, landing_files,
                                                         monkeypatch):
    """A reused step records on the local store without SQLAlchemy (pipelines.lineage.
    sqlite_writer); the rows, their stored text and the chain are those SQLAlchemy writes."""
    from pipelines.lineage import record, sqlite_writer
    from pipelines.lineage.audit import check_chain
    from pipelines.lineage.store import dispose_engines

    # fixed: others commit to this checkout while the test runs
    monkeypatch.setattr(record, "code_version",
                        lambda: {"git_sha": "0" * 40, "dirty": True, "package_version": None})

    def write(home, *, sqlite: bool) -> list[bool]:
        taken = []
        real = sqlite_writer.connect

        def spy(h):
            conn = real(h) if sqlite else None
            taken.append(conn is not None)
            return conn

        with monkeypatch.context() as m:
            m.setattr(sqlite_writer, "connect", spy)
            run_fake_chain(adult_cfg, home, landing_files, 1, run_id="run-1", try_number=2,
                           dag_id="retrain_adult", dag_run_id="scheduled__2026-11-20")
            run_fake_chain(adult_cfg, home, landing_files, 2, run_id="run-2", seed=2,
                           baseline="x")
            with pytest.raises(RuntimeError, match="disk full"):
                runner.run_step("boom", adult_cfg, home, RunContext(run_id="run-3"),
                                snapshot_uri="x")
        dispose_engines()
        return taken

    import shutil

    assert not any(write(store_home, sqlite=False))
    orm = _dump(store_home)  # artifact ids hash their paths: both writes use the same home
    shutil.rmtree(store_home)
    taken = write(store_home, sqlite=True)
    assert taken[0] is False and all(taken[1:])  # the first write creates the tables
    raw = _dump(store_home)
    for table in ("executions", "artifacts", "events", "chain_records", "chain_heads", "times"):
        assert raw[table] == orm[table], table
    assert [x["status"] for x in rows(store_home, Execution)][-1] == "failed"
    report = check_chain(store_home, "adult")
    assert report["ok"], report["problems"]
    assert report["records"] == 2 * len(rows(store_home, Execution))


def test_the_sqlite_writer_steps_aside_for_other_stores(store_home, monkeypatch, tmp_path):
    """Only the default SQLite file with every table and a sealed history; else SQLAlchemy."""
    import sqlite3

    from pipelines import store as artifact_store
    from pipelines.lineage import sqlite_writer

    assert sqlite_writer.connect(store_home) is None  # no store yet
    db = artifact_store.lineage_db(store_home)
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE executions (id INTEGER PRIMARY KEY, pipeline TEXT)")
    assert sqlite_writer.connect(store_home) is None  # an older store: SQLAlchemy migrates
    with sqlite3.connect(db) as conn:
        for table in ("artifacts", "events", "chain_records", "chain_heads"):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, pipeline TEXT)")
        conn.execute("INSERT INTO executions (pipeline) VALUES ('adult')")
    assert sqlite_writer.connect(store_home) is None  # history to seal first
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO chain_heads (pipeline) VALUES ('adult')")
    found = sqlite_writer.connect(store_home)
    assert found is not None
    found.close()
    monkeypatch.setenv("PIPELINES_LINEAGE_URL", f"sqlite:///{db}")
    assert sqlite_writer.connect(store_home) is None
