"""Lineage that cannot lie: verify fails on what it cannot prove, and the store is a hash chain.

Synthetic steps (tests/lineage/fake_steps.py) write real files and a real SQLite store; the
adversary edits that store with sqlite3 as anyone holding the file could.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import REPO_ROOT
from pipelines.lineage import chain
from pipelines.lineage.store import ChainRecord, Execution, dispose_engines, get_engine
from tests.lineage.conftest import run_fake_chain

pytestmark = pytest.mark.usefixtures("fake_steps_wired")


def cli(home: Path, *args: str) -> tuple[int, str]:
    dispose_engines()
    result = CliRunner().invoke(app, ["--home", str(home), "lineage", *args])
    return result.exit_code, result.stdout + (result.stderr or "")


def verify(home: Path, *args: str) -> tuple[int, dict]:
    code, out = cli(home, "verify", *args, "--json")
    return code, json.loads(out)


@pytest.fixture
def promoted(adult_cfg, store_home, landing_files):
    done = run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="run-1")
    dispose_engines()
    return done


def db(home: Path) -> sqlite3.Connection:
    dispose_engines()
    return sqlite3.connect(home / "lineage.db", isolation_level=None)


def test_an_intact_store_verifies(store_home, promoted):
    code, report = verify(store_home, "adult", "1")
    assert code == 0 and report["ok"], report
    assert report["chain"]["ok"] and report["chain"]["records"] == 12  # 6 steps x start/end
    assert not report["failed"] and report["counts"] == {"ok": len(report["artifacts"])}


@pytest.mark.parametrize("victim", ["registry", "landing"])
def test_a_deleted_artifact_fails_verify_and_is_named(store_home, promoted, victim):
    path = Path(promoted["promote"]["registry_uri"] if victim == "registry"
                else promoted["ingest"]["inputs"][0]["uri"])
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    code, report = verify(store_home, "adult", "1")
    assert code == 1 and not report["ok"]
    assert [(c["status"], c["uri"]) for c in report["failed"]] == [("missing", str(path))]
    code, out = cli(store_home, "verify", "adult", "1")
    kind = "ModelVersion" if victim == "registry" else "SourceFile"
    assert code == 1 and f"missing: {kind} {path}" in out


def test_an_artifact_recorded_without_a_hash_fails_verify(store_home, promoted):
    conn = db(store_home)
    conn.execute("UPDATE artifacts SET sha256 = NULL WHERE kind = 'Evaluation'")
    code, report = verify(store_home, "adult", "1")
    assert code == 1 and [c["kind"] for c in report["unchecked"]] == ["Evaluation"]
    assert not report["chain"]["ok"]  # and the edit itself is caught by the chain


def _first_broken(report: dict) -> dict:
    assert not report["ok"] and not report["chain"]["ok"]
    return report["chain"]["first_broken"]


def _records(conn) -> list[dict]:
    cols = ("seq", "execution_id", "phase", "content_sha256", "prev_sha256", "record_sha256")
    return [dict(zip(cols, r, strict=True)) for r in conn.execute(
        f"SELECT {', '.join(cols)} FROM chain_records WHERE pipeline = 'adult' ORDER BY seq")]


def test_an_edited_row_is_named(store_home, promoted):
    conn = db(store_home)
    evaluate_id = conn.execute("SELECT id FROM executions WHERE step = 'evaluate'").fetchone()[0]
    summary = json.loads(conn.execute("SELECT summary FROM executions WHERE id = ?",
                                      (evaluate_id,)).fetchone()[0])
    summary["blessed"], summary["reasons"] = True, ["overall AUC 0.990 >= 0.900"]
    conn.execute("UPDATE executions SET summary = ? WHERE id = ?",
                 (json.dumps(summary), evaluate_id))
    code, report = verify(store_home, "adult", "1")
    assert code == 1
    broken = _first_broken(report)
    end = next(r for r in _records(conn) if r["execution_id"] == evaluate_id
               and r["phase"] == "end")
    assert (broken["seq"], broken["execution"]) == (end["seq"], evaluate_id)
    assert "evaluate" in broken["message"] and "edited" in broken["message"]
    code, out = cli(store_home, "verify", "adult")
    assert code == 1 and f"chain BROKEN: chain record {end['seq']}: execution #{evaluate_id}" in out


def test_a_file_and_its_recorded_hash_changed_together_are_caught(store_home, promoted):
    """The attack of issue 14 item 5: new bytes in the snapshot, the artifact row updated to their
    sha256, so every re-hash matches; the chain still names the first record that sealed it."""
    from pipelines.hashing import sha256_tree

    snapshot = Path(promoted["ingest"]["uri"])
    (snapshot / "train" / "data.txt").write_text("forged rows\n")
    conn = db(store_home)
    conn.execute("UPDATE artifacts SET sha256 = ? WHERE uri = ?",
                 (sha256_tree(snapshot), str(snapshot)))
    code, report = verify(store_home, "adult", "1")
    assert code == 1 and report["counts"].get("mismatch") is None  # the bytes "match" now
    ingest_id = conn.execute("SELECT id FROM executions WHERE step = 'ingest'").fetchone()[0]
    assert _first_broken(report)["execution"] == ingest_id


def _reseal_from(conn, seq: int) -> None:
    """What an adversary with write access does after an edit: recompute the edited record's
    content hash and every record after it, and the head row, so each link matches again."""
    dispose_engines()
    url = conn.execute("PRAGMA database_list").fetchone()[2]
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{url}")
    with Session(engine) as s, s.begin():
        recs = list(s.scalars(select(ChainRecord).where(ChainRecord.pipeline == "adult")
                              .order_by(ChainRecord.seq)))
        prev = recs[seq - 2].record_sha256 if seq > 1 else chain.GENESIS
        for rec in recs[seq - 1:]:
            x = s.get(Execution, rec.execution_id)
            rec.content_sha256 = chain._sha(chain.content(s, x, rec.phase))
            rec.prev_sha256 = prev
            rec.record_sha256 = chain.record_sha256("adult", rec.seq, rec.execution_id, rec.phase,
                                                    rec.content_sha256, prev)
            prev = rec.record_sha256
        head = s.get(chain.ChainHead, "adult")
        head.head_sha256 = prev
    engine.dispose()


def test_an_edited_row_with_its_recorded_hash_breaks_the_next_link(store_home, promoted):
    conn = db(store_home)
    promote_id = conn.execute("SELECT id FROM executions WHERE step = 'promote'").fetchone()[0]
    conn.execute("UPDATE executions SET triggered_by = 'schedule' WHERE id = ?", (promote_id,))
    start = next(r for r in _records(conn) if r["execution_id"] == promote_id
                 and r["phase"] == "start")
    # recompute only the edited record (content and own hash), as a careless forger would
    dispose_engines()
    with Session(get_engine(store_home)) as s, s.begin():
        rec = s.scalars(select(ChainRecord).where(ChainRecord.seq == start["seq"])).one()
        rec.content_sha256 = chain._sha(chain.content(s, s.get(Execution, promote_id), "start"))
        rec.record_sha256 = chain.record_sha256("adult", rec.seq, promote_id, "start",
                                                rec.content_sha256, rec.prev_sha256)
    code, report = verify(store_home, "adult", "1")
    broken = _first_broken(report)
    assert code == 1 and broken["seq"] == start["seq"] + 1 and "previous hash" in broken["message"]


def test_the_exported_head_catches_a_rewritten_chain(store_home, promoted, tmp_path):
    exported = tmp_path / "adult-chain.json"
    code, out = cli(store_home, "export", "adult", "--out", str(exported))
    assert code == 0, out
    kept = json.loads(exported.read_text())
    head = kept["head"]["record_sha256"]
    assert kept["head"]["seq"] == len(kept["records"]) == 12
    assert kept["records"][-1]["record_sha256"] == head
    assert kept["records"][0]["content"]["step"] == "ingest"
    assert verify(store_home, "adult", "1", "--head", head)[0] == 0
    # a writer with full access edits the ingest record and reseals the whole chain after it
    conn = db(store_home)
    ingest_id = conn.execute("SELECT id FROM executions WHERE step = 'ingest'").fetchone()[0]
    conn.execute("UPDATE executions SET run_id = 'someone-else' WHERE id = ?", (ingest_id,))
    _reseal_from(conn, 1)
    code, report = verify(store_home, "adult", "1")
    assert code == 0, "a consistent rewrite passes without an anchor: the documented limit"
    for anchor in (head, str(exported)):
        code, report = verify(store_home, "adult", "1", "--head", anchor)
        assert code == 1 and f"the exported head {head} is not in the chain" in (
            report["chain"]["first_broken"]["message"])
    # records appended after the export keep the old head valid
    assert cli(store_home, "export", "adult")[0] == 0


def test_export_refuses_a_broken_chain(store_home, promoted):
    conn = db(store_home)
    conn.execute("DELETE FROM chain_records WHERE seq = 3")
    code, out = cli(store_home, "export", "adult")
    assert code == 1 and "chain is broken" in out and "chain record 4" in out


def test_rows_inserted_or_deleted_behind_the_recorder_are_reported(store_home, promoted):
    conn = db(store_home)
    conn.execute("INSERT INTO executions (pipeline, step, run_id, status, started) "
                 "SELECT pipeline, 'promote', 'forged', 'completed', started FROM executions "
                 "WHERE step = 'promote'")
    forged = conn.execute("SELECT max(id) FROM executions").fetchone()[0]
    code, report = verify(store_home, "adult")
    assert code == 1 and any(f"execution #{forged} (promote, run forged) is not sealed" in
                             p["message"] for p in report["chain"]["problems"])
    conn.execute("DELETE FROM executions WHERE id = ?", (forged,))
    conn.execute("DELETE FROM chain_records WHERE seq = (SELECT max(seq) FROM chain_records)")
    code, report = verify(store_home, "adult")
    messages = [p["message"] for p in report["chain"]["problems"]]
    assert code == 1 and "the chain only sealed its start" in messages[0]
    assert any("deleted from the end" in m for m in messages)


def test_concurrent_writers_never_fork_the_chain(adult_cfg, store_home):
    """Four processes record executions into one store at once: one unbroken chain."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from pathlib import Path
        from pipelines.config import load_config
        from pipelines.context import RunContext
        from pipelines.lineage import execution
        cfg = load_config(Path({str(REPO_ROOT)!r}) / "configs" / "adult.yaml")
        home = Path({str(store_home)!r})
        for i in range(8):
            ctx = RunContext(run_id=f"w{{sys.argv[1]}}-{{i}}", triggered_by="test")
            with execution(cfg, home, "ingest", ctx) as x:
                x.complete({{"outputs": [{{"kind": "Snapshot", "uri": f"/s/{{sys.argv[1]}}/{{i}}",
                                            "sha256": "a" * 64}}]}})
    """)
    store_home.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in range(4)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    conn = db(store_home)
    recs = _records(conn)
    assert [r["seq"] for r in recs] == list(range(1, 65))
    assert len({r["prev_sha256"] for r in recs}) == 64  # no two records share a parent
    code, report = verify(store_home, "adult")
    assert code == 0 and report["chain"]["records"] == 64


def test_a_store_from_an_older_version_opens_and_is_sealed(adult_cfg, store_home, promoted,
                                                          landing_files):
    conn = db(store_home)
    conn.execute("DROP TABLE chain_records")
    conn.execute("DROP TABLE chain_heads")
    conn.close()
    # readers still answer, and verify says why it cannot prove anything yet
    assert cli(store_home, "model", "adult", "1", "--json")[0] == 0
    assert cli(store_home, "runs", "adult")[0] == 0
    code, report = verify(store_home, "adult", "1")
    assert code == 1 and "older version" in report["chain"]["first_broken"]["message"]
    # the first writer creates the tables, seals the history as found, and chains on
    run_fake_chain(adult_cfg, store_home, landing_files, 2, run_id="run-2")
    code, report = verify(store_home, "adult", "1")
    assert code == 0, report["chain"]
    phases = [r["phase"] for r in _records(db(store_home))]
    assert phases[:6] == ["adopted"] * 6 and phases[6:] == ["start", "end"] * 6
