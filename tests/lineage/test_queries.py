"""The auditor's four commands over a synthetic chain: model, data, verify, runs (read-only)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines import runner
from pipelines.cli import app
from pipelines.context import RunContext
from pipelines.errors import DataRejected
from pipelines.hashing import sha256_file
from pipelines.lineage.query import data_lineage, model_lineage
from pipelines.lineage.store import LineageError, dispose_engines
from tests.lineage.conftest import run_fake_chain
from tests.lineage.fake_steps import FAILED_EXPECTATION

pytestmark = pytest.mark.usefixtures("fake_steps_wired")


@pytest.fixture
def history(adult_cfg, store_home, landing_files, tmp_path):
    """Version 1 from two landing files, then version 2 evaluated against 1 as its baseline."""
    v1 = run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="run-1")
    extra = tmp_path / "landing" / "2026-11-20" / "part-0.csv"
    extra.parent.mkdir(parents=True)
    extra.write_text("9,2026-11-20,y\n")
    v2 = run_fake_chain(adult_cfg, store_home, [landing_files[1], str(extra)], 2,
                        run_id="run-2", baseline=v1["promote"]["registry_uri"], seed=2)
    ctx = RunContext(run_id="run-3", triggered_by="schedule")
    snap = runner.run_step("ingest", adult_cfg, store_home, ctx, files=[str(extra)])
    with pytest.raises(DataRejected):
        runner.run_step("validate", adult_cfg, store_home, ctx, snapshot_uri=snap["uri"],
                        reject=True)
    dispose_engines()
    return {"v1": v1, "v2": v2, "extra": str(extra), "files": landing_files}


def cli(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--home", str(home), "lineage", *args])
    return result.exit_code, result.stdout


def test_model_chain_goes_down_to_the_landing_bytes(store_home, history):
    code, out = cli(store_home, "model", "adult", "2", "--json")
    assert code == 0, out
    chain = json.loads(out)
    v2 = history["v2"]
    assert chain["model_version"]["uri"] == v2["promote"]["registry_uri"]
    files = {f["uri"]: f for f in chain["source_files"]}
    assert set(files) == {history["files"][1], history["extra"]}  # not v1's other file
    for uri, f in files.items():
        assert (f["sha256"], f["size"], f["role"]) == (sha256_file(uri), os.path.getsize(uri),
                                                       "training")
    steps = [x["step"] for x in chain["executions"]]
    assert steps == ["ingest", "validate", "transform", "train", "evaluate", "promote"]
    assert {x["run_id"] for x in chain["executions"]} == {"run-2"}
    train = next(x for x in chain["executions"] if x["step"] == "train")
    assert train["parameters"] == {"transform_uri": v2["transform"]["transform_uri"],
                                   "started_on": "2026-11-20", "seed": 2}
    assert train["code_version"]["git_sha"] and train["started"] and train["ended"]
    assert chain["validation"][0]["status"] == "accepted"
    assert chain["blessing"][0]["blessed"] is True
    assert chain["blessing"][0]["reasons"] == v2["evaluate"]["reasons"]
    assert chain["promotion"][0]["version"] == 2 and chain["promotion"][0]["previous_version"] == 1
    # the baseline is listed but its own history (version 1's files) is not followed
    kinds = [a["kind"] for a in chain["artifacts"]]
    assert kinds.count("ModelVersion") == 2 and kinds.count("Model") == 1
    assert chain["gaps"] == []


def test_model_text_and_html(store_home, history, tmp_path):
    code, out = cli(store_home, "model", "adult", "1")
    assert code == 0 and history["files"][0] in out and "promoted" in out
    page = tmp_path / "lineage.html"
    code, _ = cli(store_home, "model", "adult", "1", "--html", "--out", str(page))
    html = page.read_text()
    chain = model_lineage(store_home, "adult", "1")
    assert code == 0 and "<svg" in html
    assert html.count("<rect") == len(chain["executions"]) + len(chain["artifacts"]) == 6 + 9
    assert history["v1"]["promote"]["registry_uri"] in html


def test_unknown_version_is_a_clear_error(store_home, history):
    with pytest.raises(LineageError, match=r"versions recorded: \['1', '2'\]"):
        model_lineage(store_home, "adult", "7")
    code, _ = cli(store_home, "model", "adult", "7")
    assert code == 1


def test_data_lists_everything_a_file_fed(store_home, history):
    shared = history["files"][1]  # in both versions' training data
    by_uri = data_lineage(store_home, shared)
    by_sha = data_lineage(store_home, sha256_file(shared))
    assert by_uri["executions"] == by_sha["executions"]
    assert {p["version"] for p in by_uri["promotions"]} == {1, 2}
    assert len(by_uri["models"]) == 2 and len(by_uri["snapshots"]) == 2
    only_v1 = data_lineage(store_home, history["files"][0])
    assert {p["version"] for p in only_v1["promotions"]} == {1}  # baseline use is not "fed"
    code, out = cli(store_home, "data", history["extra"], "--json")
    found = json.loads(out)
    assert code == 0 and {p["version"] for p in found["promotions"]} == {2}
    assert any(x["status"] == "rejected" for x in found["executions"])
    code, _ = cli(store_home, "data", "0" * 64)
    assert code == 1


def test_verify_names_the_changed_snapshot(store_home, history):
    code, out = cli(store_home, "verify", "adult", "2", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["counts"]["ok"] == len(report["artifacts"])
    data = Path(history["v2"]["ingest"]["uri"]) / "train" / "data.txt"
    raw = bytearray(data.read_bytes())
    raw[3] ^= 1
    data.write_bytes(bytes(raw))
    code, out = cli(store_home, "verify", "adult", "2", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert [(c["kind"], c["uri"]) for c in report["mismatched"]] == [
        ("Snapshot", history["v2"]["ingest"]["uri"])]
    Path(history["extra"]).unlink()
    code, out = cli(store_home, "verify", "adult", "2")
    assert code == 1 and f"missing: SourceFile {history['extra']}" in out


def test_runs_show_outcomes_and_why(store_home, history):
    code, out = cli(store_home, "runs", "adult", "--json")
    runs = {r["run_id"]: r for r in json.loads(out)["runs"]}
    assert code == 0 and list(runs) == ["run-3", "run-2", "run-1"]
    assert runs["run-1"]["outcome"] == "promoted" and runs["run-1"]["version"] == 1
    assert runs["run-3"]["outcome"] == "rejected"
    assert runs["run-3"]["why"] == [FAILED_EXPECTATION]
    assert runs["run-3"]["triggered_by"] == "schedule"
    code, out = cli(store_home, "runs", "adult")
    assert "rejected" in out and FAILED_EXPECTATION in out


def test_not_promoted_run_says_why(adult_cfg, store_home, landing_files):
    from pipelines.errors import NotPromoted

    with pytest.raises(NotPromoted):
        run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="r", blessed=False)
    code, out = cli(store_home, "runs", "adult", "--json")
    run = json.loads(out)["runs"][0]
    assert (run["outcome"], run["why"]) == ("not_promoted", ["not blessed"])


def test_readers_never_write(store_home, history):
    db = store_home / "lineage.db"
    before = (db.stat().st_mtime_ns, db.read_bytes())
    for args in (["model", "adult", "2", "--json"], ["data", history["extra"]],
                 ["verify", "adult", "1"], ["runs", "adult"]):
        cli(store_home, *args)
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
    from sqlalchemy import text

    from pipelines.lineage.store import get_engine

    with get_engine(store_home, readonly=True).connect() as conn, pytest.raises(
            Exception, match="readonly"):
        conn.execute(text("DELETE FROM events"))
    assert sqlite3.connect(db).execute("select count(*) from events").fetchone()[0] > 0


def test_no_store_yet_is_a_clear_error(tmp_path):
    code, _ = cli(tmp_path, "runs", "adult")
    assert code == 1 and not (tmp_path / "lineage.db").exists()


def test_a_broken_link_is_reported_not_papered_over(adult_cfg, store_home, landing_files):
    done = run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="r",
                          transform_kwargs={"hash_data_only": True})
    chain = model_lineage(store_home, "adult", "1")
    # the training chain stops where the hashes disagree (evaluate still reached the files)
    assert {f["role"] for f in chain["source_files"]} == {"evaluation"}
    [gap] = chain["gaps"]
    assert (gap["uri"], gap["read_by"], [w["step"] for w in gap["written"]]) == (
        done["ingest"]["uri"], ["transform"], ["ingest"])
    code, out = cli(store_home, "model", "adult", "1")
    assert code == 0 and "BROKEN LINK: transform read Snapshot" in out
