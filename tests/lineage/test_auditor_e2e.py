"""End to end: the real chain through runner.run_step, then the auditor's four commands.

The chain runs once per module in the session's artifact store (tests/conftest.py), so the
expensive steps reuse the session's snapshots, transform and model instead of recomputing them;
evaluate, promote and report run for real. No other test reads that store's registry. Every answer is checked against what the
steps returned (captured around ``runner.run_step``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines import flow, runner
from pipelines.cli import app
from pipelines.config import REPO_ROOT
from pipelines.context import RunContext
from pipelines.errors import DataRejected, PipelineError
from pipelines.lineage.audit import verify_model
from pipelines.lineage.query import model_lineage
from pipelines.lineage.store import dispose_engines, json_safe
from tests.conftest import END_DATE
from tests.lineage.test_openlineage import check_events

pytestmark = pytest.mark.slow
CONFIG = REPO_ROOT / "configs" / "adult.yaml"


def _clean_env(mp: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("OPENLINEAGE") or key in ("PIPELINES_LINEAGE_URL", "PIPELINES_LANDING"):
            mp.delenv(key)


@pytest.fixture(scope="module")
def audit(pipeline_home, trained, golden):
    """The chain in the session's store: ingest, transform and train reuse the session's artifacts
    (content-addressed), evaluate, promote and report run; lineage goes to its lineage.db."""
    home = pipeline_home
    calls: list[dict] = []
    real_run_step = runner.run_step

    def spy(step, cfg, home_, ctx, **kwargs):
        try:
            result = real_run_step(step, cfg, home_, ctx, **kwargs)
        except PipelineError as exc:
            calls.append({"step": step, "kwargs": kwargs, "result": exc.result, "error": exc})
            raise
        calls.append({"step": step, "kwargs": kwargs, "result": result, "error": None})
        return result

    with pytest.MonkeyPatch.context() as mp:
        _clean_env(mp)
        mp.setattr(runner, "run_step", spy)
        dispose_engines()
        ctx = RunContext(run_id="audit-e2e", triggered_by="test")
        done = flow.run_chain(CONFIG, ctx, {"span": END_DATE.isoformat(), "window": 7}, home=home)
        dispose_engines()
    assert done["promote"], f"the demo model was not promoted: {done['not_promoted']}"
    by_step = {}
    for c in calls:
        key = "golden" if c["kwargs"].get("golden") else c["step"]
        by_step[key] = c
    version = str(done["promote"]["version"])
    with pytest.MonkeyPatch.context() as mp:
        _clean_env(mp)
        dispose_engines()
        gaps = [g["message"] for g in model_lineage(home, "adult", version)["gaps"]]
        unreproducible = [f"{c['kind']} {c['uri']}: recorded {c['recorded']}, bytes {c['actual']}"
                          for c in verify_model(home, "adult", version)["mismatched"]]
        dispose_engines()
    return {"home": home, "done": done, "calls": calls, "steps": by_step, "version": version,
            "gaps": gaps, "unreproducible": unreproducible}


def require_connected_chain(audit: dict) -> None:
    """The chain links only if each step records its inputs as their producer recorded them."""
    assert not audit["gaps"], ("producers and consumers record different sha256 for the same "
                               "artifact (fix in the step named first): " + " | ".join(audit["gaps"]))


def lineage(home: Path, *args: str) -> tuple[int, str]:
    with pytest.MonkeyPatch.context() as mp:
        _clean_env(mp)
        dispose_engines()
        result = CliRunner().invoke(app, ["--home", str(home), "lineage", *args])
    return result.exit_code, result.stdout


def files_of(result: dict) -> set[tuple]:
    return {(a["uri"], a["sha256"], a["size"]) for a in result["inputs"]
            if a["kind"] == "SourceFile"}


def test_which_files_and_bytes_trained_the_production_model(audit):
    require_connected_chain(audit)
    code, out = lineage(audit["home"], "model", "adult", audit["version"], "--json")
    assert code == 0, out
    chain = json.loads(out)
    training = {(f["uri"], f["sha256"], f["size"]) for f in chain["source_files"]
                if f["role"] == "training"}
    assert training == files_of(audit["steps"]["ingest"]["result"])
    others = {(f["uri"], f["sha256"], f["size"]) for f in chain["source_files"]} - training
    assert others <= files_of(audit["steps"]["golden"]["result"])
    model = next(a for a in chain["artifacts"] if a["kind"] == "Model")
    assert model["sha256"] == audit["steps"]["train"]["result"]["sha256"]


def test_which_code_parameters_and_trigger_ran_each_step(audit):
    require_connected_chain(audit)
    chain = json.loads(lineage(audit["home"], "model", "adult", audit["version"], "--json")[1])
    steps = {x["step"] for x in chain["executions"]}
    assert {"ingest", "validate", "transform", "train", "evaluate", "promote"} <= steps
    calls = [c for c in audit["calls"] if c["step"] in steps]
    for x in chain["executions"]:
        assert x["status"] == "completed" and x["triggered_by"] == "test"
        assert x["code_version"]["git_sha"] and x["config_sha256"]
        assert json_safe(x["parameters"]) in [json_safe(c["kwargs"]) for c in calls
                                              if c["step"] == x["step"]]


def test_what_validated_them_and_why_the_model_was_promoted(audit):
    require_connected_chain(audit)
    chain = json.loads(lineage(audit["home"], "model", "adult", audit["version"], "--json")[1])
    validated = audit["steps"]["validate"]["result"]
    assert [(v["status"], v["expectations"]) for v in chain["validation"]] == [
        ("accepted", validated["expectations"])]
    evaluated = audit["steps"]["evaluate"]["result"]
    assert [(b["blessed"], b["reasons"]) for b in chain["blessing"]] == [
        (True, evaluated["reasons"])]
    promoted = audit["steps"]["promote"]["result"]
    assert [(p["promoted"], p["version"]) for p in chain["promotion"]] == [
        (True, promoted["version"])]
    # `pipelines run` started the infra check during evaluate; promote took it for the same bytes
    check = promoted["infra_check"]
    assert check["passed"] and check["prestarted"] and check["pid_fresh"]
    assert check["same_sha256_as"] == promoted["registry_uri"]
    code, page = lineage(audit["home"], "model", "adult", audit["version"], "--html")
    assert code == 0 and "<svg" in page and promoted["registry_uri"] in page


def test_which_models_a_source_file_fed(audit):
    require_connected_chain(audit)
    source = sorted(files_of(audit["steps"]["ingest"]["result"]))[0]
    for ref in (source[0], source[1]):
        code, out = lineage(audit["home"], "data", ref, "--json")
        found = json.loads(out)
        assert code == 0
        assert int(audit["version"]) in [p["version"] for p in found["promotions"]]
        assert audit["steps"]["train"]["result"]["sha256"] in [m["sha256"] for m in found["models"]]
        assert audit["steps"]["ingest"]["result"]["uri"] in [s["uri"] for s in found["snapshots"]]


def test_runs_and_openlineage_events(audit):
    code, out = lineage(audit["home"], "runs", "adult", "--json")
    run = next(r for r in json.loads(out)["runs"] if r["run_id"] == "audit-e2e")
    assert (code, run["outcome"], str(run["version"])) == (0, "promoted", audit["version"])
    events = [json.loads(line) for line in
              (audit["home"] / "openlineage" / "events.jsonl").read_text().splitlines()]
    events = [e for e in events
              if e["run"]["facets"]["pipelines_execution"]["run_id"] == "audit-e2e"]
    assert len(events) == 2 * len(audit["calls"])
    check_events(events)


def test_one_changed_byte_in_a_snapshot_fails_verify(audit):
    require_connected_chain(audit)
    before = {c["id"] for c in json.loads(lineage(
        audit["home"], "verify", "adult", audit["version"], "--json")[1])["mismatched"]}
    snapshot = Path(audit["steps"]["ingest"]["result"]["uri"])
    victim = sorted(snapshot.glob("train/*.tfrecord"))[0]
    original = victim.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    try:
        victim.write_bytes(bytes(changed))
        code, out = lineage(audit["home"], "verify", "adult", audit["version"], "--json")
    finally:
        victim.write_bytes(original)
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert [(c["kind"], c["uri"]) for c in report["mismatched"] if c["id"] not in before] == [
        ("Snapshot", str(snapshot))]
    code, out = lineage(audit["home"], "verify", "adult", audit["version"])
    assert f"mismatch: Snapshot {snapshot}" not in out


def test_every_artifact_of_the_chain_verifies_after_the_run(audit):
    assert not audit["unreproducible"], (
        "these producers record a sha256 that is not the sha256 of the bytes at the URI "
        "(file: sha256_file, folder: sha256_tree): " + " | ".join(audit["unreproducible"]))
    code, out = lineage(audit["home"], "verify", "adult", audit["version"], "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["counts"].get("ok", 0) >= 8


def test_a_rejected_span_shows_as_rejected_with_its_failures(adult_cfg, staged, tmp_path):
    home, landing = tmp_path / "home", tmp_path / "landing"
    source = Path(staged["files"][0]["uri"]).read_text().splitlines()
    bad = [source[0]] + [("-4" + line[line.index(","):]) if i < 3 else line
                         for i, line in enumerate(source[1:])]
    day = landing / "adult" / END_DATE.isoformat()
    day.mkdir(parents=True)
    (day / "part-00000.csv").write_text("\n".join(bad) + "\n")
    ctx = RunContext(run_id="bad-span", triggered_by="schedule")
    with pytest.MonkeyPatch.context() as mp:
        _clean_env(mp)
        dispose_engines()
        snap = runner.run_step("ingest", adult_cfg, home, ctx, span=END_DATE, landing=landing)
        with pytest.raises(DataRejected) as rejected:
            runner.run_step("validate", adult_cfg, home, ctx, snapshot_uri=snap["uri"])
        dispose_engines()
    code, out = lineage(home, "runs", "adult", "--json")
    run = json.loads(out)["runs"][0]
    assert (code, run["run_id"], run["outcome"]) == (0, "bad-span", "rejected")
    failures = rejected.value.result["failures"]
    assert failures and run["why"][:len(failures)] == failures
    assert any("column age" in why for why in run["why"])
    code, text = lineage(home, "runs", "adult")
    assert "rejected" in text and failures[0] in text
