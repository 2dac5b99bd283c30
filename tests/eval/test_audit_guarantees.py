"""Issue 14: what was evaluated is exactly what ships, on the real chain (session model, TFMA, TF).

Each test is one defect of the issue (numbered as there) that passed before and is refused now:
forged, edited, stale, expired evaluations and ones about another model (1, 8); a file swapped in
the model after evaluate (2); a database error while promote records, then the retry (6); the same
model evaluated again against itself (7); rollbacks with ``lineage model`` and ``verify`` complete
afterwards, and a deleted version refused (3, 4). Registry-only crash, fsync and damaged-aliases
tests are in test_registry.py (13).

Three TFMA runs, on the eval split only: the session's model with no baseline; the same model
against version 1 (already in production); a byte-different copy of it (one extra asset file,
same predictions) against version 1, promoted as version 2 for the rollback tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import registry
from pipelines.config import REPO_ROOT
from pipelines.errors import NotPromoted, PipelineError
from pipelines.evaluate import saved_model_dir
from pipelines.runner import run_step
from pipelines.store import read_json

pytestmark = pytest.mark.slow
CONFIG = str(REPO_ROOT / "configs" / "adult.yaml")
OVERRIDES = {"slice_auc_min": 0.80}


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PIPELINES_LINEAGE_URL"}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=600, cwd=str(REPO_ROOT),
                          env={**env, "PYTHONPATH": str(REPO_ROOT), "PIPELINES_HOME": str(home)})


@pytest.fixture(scope="module")
def home(tmp_path_factory, monkeymodule) -> Path:
    return tmp_path_factory.mktemp("audit_home")


@pytest.fixture(scope="module")
def monkeymodule():
    mp = pytest.MonkeyPatch()
    mp.delenv("PIPELINES_LINEAGE_URL", raising=False)  # this module's lineage.db in its home
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def ev1(adult_cfg, home, ctx, trained, snapshot):
    run_step("validate", adult_cfg, home, ctx, snapshot_uri=snapshot["uri"])  # stored verdict
    ev = run_step("evaluate", adult_cfg, home, ctx, model_uri=trained["model_uri"],
                  snapshot_uris=[snapshot["uri"]], golden_uri=None, threshold_overrides=OVERRIDES)
    assert ev["blessed"] and ev["baseline"] is None, ev["reasons"]
    return ev


def _promote(cfg, home, ctx, model_uri, evaluation_uri):
    return run_step("promote", cfg, home, ctx, model_uri=model_uri, evaluation_uri=evaluation_uri)


def _refused(cfg, home, ctx, model_uri, evaluation_uri, match: str) -> NotPromoted:
    with pytest.raises(NotPromoted, match=match) as info:
        _promote(cfg, home, ctx, model_uri, evaluation_uri)
    assert info.value.result["promoted"] is False
    return info.value


def _model_copy(trained, tmp_path: Path, name: str) -> Path:
    """The session's SavedModel with one extra asset: other bytes, same predictions."""
    src = saved_model_dir(trained["model_uri"])
    dst = tmp_path / name / "saved_model"
    shutil.copytree(src, dst)
    (dst / "assets").mkdir(exist_ok=True)
    (dst / "assets" / f"{name}.txt").write_text(name)
    return dst.parent


# --- 8: evaluate reads only accepted snapshots ---------------------------------------------------

def test_evaluate_refuses_data_that_is_not_an_accepted_snapshot(adult_cfg, home, ctx, trained,
                                                                snapshot, tmp_path):
    def refused(uri: str, match: str) -> None:
        with pytest.raises(PipelineError, match=match):
            run_step("evaluate", adult_cfg, home, ctx, model_uri=trained["model_uri"],
                     snapshot_uris=[uri], golden_uri=None)

    folder = tmp_path / "any"
    shutil.copytree(Path(snapshot["uri"]) / "eval", folder / "eval")
    refused(str(folder), "is not a snapshot written by `pipelines ingest`")
    unvalidated = tmp_path / "snapshots" / "copy"
    shutil.copytree(snapshot["uri"], unvalidated)
    refused(str(unvalidated), "was never validated.*pipelines validate")
    vdir = unvalidated.parent / "copy.validation"
    vdir.mkdir()
    result = read_json(Path(f"{snapshot['uri']}.validation") / "result.json")
    (vdir / "result.json").write_text(json.dumps({**result, "status": "rejected"}))
    refused(str(unvalidated), "was rejected by validation")
    (vdir / "result.json").write_text(json.dumps(result))  # accepted, but of other bytes
    (unvalidated / "eval" / "extra.txt").write_text("appended after validation")
    refused(str(unvalidated), "changed after it was validated")


# --- 1: the evaluation is what lineage recorded --------------------------------------------------

def test_a_forged_evaluation_in_a_scratch_folder_is_refused(adult_cfg, home, ctx, trained, ev1,
                                                            tmp_path):
    forged = tmp_path / "scratch" / "evaluation"
    shutil.copytree(ev1["evaluation_uri"], forged)  # byte-identical, blessed, but not recorded
    _refused(adult_cfg, home, ctx, trained["model_uri"], str(forged),
             "not written by any recorded `evaluate` execution")
    hand = tmp_path / "hand"
    hand.mkdir()
    record = read_json(Path(ev1["evaluation_uri"]) / "evaluation.json")
    (hand / "evaluation.json").write_text(json.dumps({**record, "blessed": True}))
    _refused(adult_cfg, home, ctx, trained["model_uri"], str(hand), "not written by any")
    assert registry.production(adult_cfg, home) is None


def test_an_edited_evaluation_is_refused(adult_cfg, home, ctx, trained, ev1):
    path = Path(ev1["evaluation_uri"]) / "evaluation.json"
    original = path.read_bytes()
    try:
        record = json.loads(original)
        path.write_text(json.dumps({**record, "reasons": [], "blessed": True, "note": "edited"}))
        _refused(adult_cfg, home, ctx, trained["model_uri"], ev1["evaluation_uri"],
                 "changed after the evaluate step recorded it")
    finally:
        path.write_bytes(original)
    assert registry.production(adult_cfg, home) is None


def test_an_evaluation_of_another_model_is_refused(adult_cfg, home, ctx, trained, ev1, tmp_path):
    other = _model_copy(trained, tmp_path, "other")
    _refused(adult_cfg, home, ctx, str(other), ev1["evaluation_uri"],
             "audited model sha256 .* not this candidate")


def test_an_expired_evaluation_is_refused(adult_cfg, home, ctx, trained, ev1):
    promotion = adult_cfg.promotion.model_copy(update={"evaluation_max_age_hours": 1e-6})
    cfg = adult_cfg.model_copy(update={"promotion": promotion})
    _refused(cfg, home, ctx, trained["model_uri"], ev1["evaluation_uri"], "expired evaluation")


def test_an_evaluation_whose_snapshot_is_no_longer_accepted_is_refused(adult_cfg, home, ctx,
                                                                      trained, snapshot, ev1):
    vdir = Path(f"{snapshot['uri']}.validation")
    aside = vdir.with_name(vdir.name + ".aside")
    os.rename(vdir, aside)
    try:
        _refused(adult_cfg, home, ctx, trained["model_uri"], ev1["evaluation_uri"],
                 "only accepted snapshots count")
    finally:
        os.rename(aside, vdir)


# --- 2: a file swapped after evaluate never reaches production ------------------------------------

def test_a_variables_file_swapped_after_evaluate_is_refused(adult_cfg, home, ctx, trained, ev1):
    variables = next((saved_model_dir(trained["model_uri"]) / "variables").glob("*.data-*"))
    original = variables.read_bytes()
    try:
        variables.write_bytes(original[:-8] + bytes(8))
        _refused(adult_cfg, home, ctx, trained["model_uri"], ev1["evaluation_uri"],
                 "audited model sha256")
    finally:
        variables.write_bytes(original)
    assert registry.production(adult_cfg, home) is None
    assert not (registry.root(adult_cfg, home) / "1").exists()


# --- 6: a database error while promote records; the retry promotes --------------------------------

def test_a_database_error_during_promote_leaves_production_unmoved_and_the_retry_promotes(
        adult_cfg, home, ctx, trained, ev1, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from pipelines.lineage import record
    from pipelines.lineage.audit import verify_model

    real = record.ExecutionRecord._write_graph
    failures = []

    def broken(self, status, result, error):
        if self.step == "promote" and not failures:
            failures.append(status)
            raise OperationalError("INSERT INTO events", {}, Exception("database is locked"))
        return real(self, status, result, error)

    monkeypatch.setattr(record.ExecutionRecord, "_write_graph", broken)
    with pytest.raises(OperationalError):
        _promote(adult_cfg, home, ctx, trained["model_uri"], ev1["evaluation_uri"])
    assert failures == ["completed"]
    assert registry.production(adult_cfg, home) is None
    assert registry.read_aliases(adult_cfg, home)["versions"] == []
    assert not (registry.root(adult_cfg, home) / registry.INTENT_FILE).exists()
    retried = _promote(adult_cfg, home, ctx, trained["model_uri"], ev1["evaluation_uri"])
    assert retried["promoted"] and retried["version"] == 1
    assert registry.production(adult_cfg, home)["version"] == 1
    check = verify_model(home, adult_cfg.name, "1")
    assert check["ok"], check
    assert set(check["counts"]) == {"ok"}, check["counts"]  # nothing unchecked or missing


def test_a_stale_evaluation_is_refused_once_production_moved(adult_cfg, home, ctx, trained, ev1):
    assert registry.production(adult_cfg, home)["version"] == 1
    _refused(adult_cfg, home, ctx, trained["model_uri"], ev1["evaluation_uri"],
             "stale evaluation: it compared against production version None")


# --- 7: the same model again is already in production ----------------------------------------------

def test_the_same_model_evaluated_again_is_already_in_production(adult_cfg, home, ctx, trained,
                                                                 snapshot):
    ev = run_step("evaluate", adult_cfg, home, ctx, model_uri=trained["model_uri"],
                  snapshot_uris=[snapshot["uri"]], golden_uri=None, threshold_overrides=OVERRIDES)
    assert ev["blessed"] and ev["baseline"]["version"] == 1, ev["reasons"]
    refused = _refused(adult_cfg, home, ctx, trained["model_uri"], ev["evaluation_uri"],
                       "already in production: version 1")
    assert refused.result["already_in_production"] and refused.result["version"] == 1
    assert registry.read_aliases(adult_cfg, home)["versions"] == [1]


# --- 3, 4: rollbacks keep the whole chain; no swap; deleted versions refused -----------------------

@pytest.fixture(scope="module")
def two_versions(adult_cfg, home, ctx, trained, snapshot, ev1, tmp_path_factory):
    second = _model_copy(trained, tmp_path_factory.mktemp("second"), "second")
    ev = run_step("evaluate", adult_cfg, home, ctx, model_uri=str(second),
                  snapshot_uris=[snapshot["uri"]], golden_uri=None, threshold_overrides=OVERRIDES)
    assert ev["blessed"], ev["reasons"]
    promoted = _promote(adult_cfg, home, ctx, str(second), ev["evaluation_uri"])
    assert promoted["version"] == 2
    return promoted


def _chain_is_complete(home: Path, version: str) -> dict:
    chain = _cli(home, "lineage", "model", "adult", version, "--json")
    assert chain.returncode == 0, chain.stderr[-2000:]
    body = json.loads(chain.stdout)
    steps = {x["step"] for x in body["executions"]}
    assert {"validate", "evaluate", "promote"} <= steps, steps
    assert [(p["promoted"], p["version"]) for p in body["promotion"]
            if p["status"] == "completed"] == [(True, int(version))]
    verify = _cli(home, "lineage", "verify", "adult", version, "--json")
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
    checked = json.loads(verify.stdout)
    assert set(checked["counts"]) == {"ok"}, checked["counts"]
    assert checked["counts"]["ok"] == len(body["artifacts"]) >= 6
    return body


def test_rollback_twice_and_to_a_named_version_keep_the_whole_chain(adult_cfg, home, two_versions):
    back = _cli(home, "registry", "rollback", CONFIG, "--reason", "v2 misbehaves", "--json")
    assert back.returncode == 0, back.stderr[-2000:]
    assert json.loads(back.stdout)["production"]["version"] == 1
    _chain_is_complete(home, "1")
    again = _cli(home, "registry", "rollback", CONFIG, "--reason", "again", "--json")
    assert again.returncode == 1 and "--to N" in again.stderr, again.stderr[-2000:]
    assert registry.production(adult_cfg, home)["version"] == 1, "no swap back to the bad model"
    pinned = _cli(home, "registry", "rollback", CONFIG, "--to", "2", "--reason", "fixed upstream",
                  "--json")
    assert pinned.returncode == 0, pinned.stderr[-2000:]
    assert registry.production(adult_cfg, home)["version"] == 2
    _chain_is_complete(home, "2")
    history = registry.read_aliases(adult_cfg, home)["history"]
    assert [(h["action"], h["production"], h.get("reason")) for h in history[-2:]] == [
        ("rollback", 1, "v2 misbehaves"), ("rollback", 2, "fixed upstream")]
    assert all(h["user"] and h["triggered_by"] == "cli" for h in history[-2:])


def test_rollback_to_a_deleted_version_is_refused(adult_cfg, home, two_versions):
    v1 = registry.root(adult_cfg, home) / "1"
    aside = v1.with_name(".test-aside-1")
    os.rename(v1, aside)
    try:
        proc = _cli(home, "registry", "rollback", CONFIG, "--to", "1", "--reason", "x")
        assert proc.returncode == 1 and "its folder" in proc.stderr and "is missing" in proc.stderr
        assert registry.production(adult_cfg, home)["version"] == 2
    finally:
        os.rename(aside, v1)
