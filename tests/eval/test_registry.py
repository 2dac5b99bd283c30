"""Registry behaviour in real processes: SIGKILL mid-promotion, concurrent promotions, rollback.

The registry treats a model as an opaque folder, so these tests push a small folder of files; the
end-to-end tests in test_promotion.py push the real trained SavedModel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines import registry
from pipelines.config import REPO_ROOT
from pipelines.context import RunContext
from pipelines.errors import NotPromoted, PipelineError, UsageError
from pipelines.hashing import sha256_tree

PUSH = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from pipelines import registry
    from pipelines.context import RunContext
    from pipelines.errors import NotPromoted, PipelineError, UsageError
    from pipelines.config import load_config
    cfg = load_config(sys.argv[1])
    home, model, expected, go = Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    while go != "-" and not Path(go).exists():
        time.sleep(0.005)
    try:
        out = registry.push(cfg, home, RunContext(), model,
                            None if expected == "none" else int(expected), {"by": "test"})
    except NotPromoted as exc:
        print(exc)
        sys.exit(3)
    print(json.dumps(out))
""")


@pytest.fixture()
def model_dir(tmp_path) -> Path:
    d = tmp_path / "model"
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(os.urandom(4096))
    (d / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(2 << 20))
    return d


def _push(adult_cfg, home, model, expected, go="-", fault=None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop(registry.FAULT_ENV, None)
    if fault:
        env[registry.FAULT_ENV] = fault
    return subprocess.Popen(
        [sys.executable, "-c", PUSH, str(REPO_ROOT / "configs" / f"{adult_cfg.name}.yaml"),
         str(home), str(model), "none" if expected is None else str(expected), str(go)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _visible_versions(home, cfg) -> list[int]:
    return sorted(int(p.name) for p in registry.root(cfg, home).iterdir() if p.name.isdigit())


def test_first_push_then_rollback_restores_previous(adult_cfg, tmp_path, model_dir):
    ctx = RunContext(run_id="t")
    first = registry.push(adult_cfg, tmp_path, ctx, model_dir, None, {})
    second = registry.push(adult_cfg, tmp_path, ctx, model_dir, first["version"], {})
    assert (first["version"], second["version"], second["previous_version"]) == (1, 2, 1)
    assert registry.production(adult_cfg, tmp_path)["version"] == 2
    assert sha256_tree(model_dir) == second["model_sha256"]
    with pytest.raises(NotPromoted, match="another promotion won"):
        registry.push(adult_cfg, tmp_path, ctx, model_dir, 1, {})  # stale baseline
    result = registry.rollback_step(adult_cfg, tmp_path, ctx, reason="bad canary")
    assert result["production"]["version"] == 1 and result["rolled_back_from"] == 2
    assert registry.production(adult_cfg, tmp_path)["version"] == 1
    assert registry.previous(adult_cfg, tmp_path) is None  # 2 left the production history
    history = registry.read_aliases(adult_cfg, tmp_path)["history"]
    assert [h["action"] for h in history] == ["promote", "promote", "rollback"]
    assert history[-1]["reason"] == "bad canary" and history[-1]["user"]
    assert history[-1]["rolled_back_from"] == 2


@pytest.mark.parametrize("fault", ["after_copy", "after_publish", "after_check"])
def test_sigkill_mid_promotion_leaves_no_half_version_and_consistent_aliases(
        adult_cfg, tmp_path, model_dir, fault):
    ctx = RunContext(run_id="t")
    registry.push(adult_cfg, tmp_path, ctx, model_dir, None, {})
    before = registry.read_aliases(adult_cfg, tmp_path)
    proc = _push(adult_cfg, tmp_path, model_dir, 1, fault=fault)
    proc.communicate(timeout=60)
    assert proc.returncode == -9, "the push process must have died by SIGKILL"
    after = registry.read_aliases(adult_cfg, tmp_path)
    assert after == before, "aliases must not move when a promotion dies"
    assert [v["version"] for v in registry.list_versions(adult_cfg, tmp_path)] == [1]
    visible = _visible_versions(tmp_path, adult_cfg)
    if fault == "after_copy":
        assert visible == [1], "a half-copied version must stay under a hidden temporary name"
    elif fault == "after_check":  # no check given here: same state as after_publish
        assert visible == [1, 2]
    else:  # complete but never registered: not listed, not aliased, swept by the next writer
        assert visible == [1, 2]
        orphan = registry.root(adult_cfg, tmp_path) / "2"
        assert (orphan / "saved_model.pb").read_bytes() == (model_dir / "saved_model.pb").read_bytes()
    nxt = registry.push(adult_cfg, tmp_path, ctx, model_dir, 1, {})
    assert nxt["version"] == (2 if fault == "after_copy" else 3)
    assert _visible_versions(tmp_path, adult_cfg) == [1, nxt["version"]]
    assert not [p for p in registry.root(adult_cfg, tmp_path).iterdir() if p.name.startswith(".tmp-")]
    aliases = registry.read_aliases(adult_cfg, tmp_path)
    assert (aliases["production"], aliases["previous"]) == (nxt["version"], 1)


def test_concurrent_promotions_only_one_wins(adult_cfg, tmp_path, model_dir):
    registry.push(adult_cfg, tmp_path, RunContext(), model_dir, None, {})
    go = tmp_path / "go"
    procs = [_push(adult_cfg, tmp_path, model_dir, 1, go=go) for _ in range(2)]
    time.sleep(1.0)  # both interpreters up and waiting on the barrier
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outs
    loser = next(o for p, o in zip(procs, outs, strict=True) if p.returncode == 3)
    assert "another promotion won" in loser[0]
    aliases = registry.read_aliases(adult_cfg, tmp_path)
    assert aliases["versions"] == [1, 2] and aliases["production"] == 2
    winner = json.loads(next(o for p, o in zip(procs, outs, strict=True) if p.returncode == 0)[0])
    assert winner["version"] == 2


def test_show_rejects_unknown_reference(adult_cfg, tmp_path, model_dir):
    registry.push(adult_cfg, tmp_path, RunContext(), model_dir, None, {})
    assert registry.show(adult_cfg, tmp_path, "production")["version"] == 1
    with pytest.raises(Exception, match="not a version number"):
        registry.show(adult_cfg, tmp_path, "previous")


# --- issue 14: a registry an auditor can trust -------------------------------------------------

CRASH = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from pipelines.config import load_config
    from tests.eval.test_registry import promote_recorded
    cfg = load_config(sys.argv[1])
    out = promote_recorded(cfg, Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), run_id="crash")
    print(json.dumps(out))
""")


def promote_recorded(cfg, home, model, expected, run_id="t", check=None) -> dict:
    """registry.push the way the promote step does it: inside a real lineage execution, recorded
    (ModelVersion and history entry) before the aliases move."""
    from pipelines import lineage
    from pipelines.results import artifact

    ctx = RunContext(run_id=run_id, triggered_by="test")
    with lineage.execution(cfg, home, "promote", ctx, params={"model": str(model)}) as ex:
        def commit(out):
            ex.complete({"promoted": True, "version": out["version"], "outputs": [
                artifact("ModelVersion", out["registry_uri"], out["sha256"], None,
                         version=out["version"]),
                artifact("RegistryAliases", out["journal_uri"], out["journal_sha256"], None)]})
        return registry.push(cfg, home, ctx, model, expected, {"by": "test"},
                             expected_sha256=sha256_tree(model),
                             check=check or (lambda folder: {"passed": True}), commit=commit)


def _recorded_versions(home, cfg) -> set[int]:
    """Versions that a completed execution recorded as a ModelVersion output in lineage."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from pipelines.lineage.store import COMPLETED, Artifact, Event, Execution, get_engine

    with Session(get_engine(home, readonly=True)) as session:
        rows = session.execute(
            select(Artifact.properties).join(Event, Event.artifact_id == Artifact.id)
            .join(Execution, Execution.id == Event.execution_id)
            .where(Artifact.kind == "ModelVersion", Event.type == "output",
                   Execution.status == COMPLETED)).all()
    return {int(p["version"]) for (p,) in rows}


def _other_model(model_dir: Path, tmp_path: Path, name: str = "other") -> Path:
    other = tmp_path / name
    shutil.copytree(model_dir, other)
    (other / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(2 << 20))
    return other


@pytest.mark.parametrize("fault", registry.FAULT_POINTS)
def test_sigkill_at_each_fault_point_aliases_and_lineage_agree_after_the_next_writer(
        adult_cfg, tmp_path, model_dir, fault, monkeypatch):
    monkeypatch.delenv("PIPELINES_LINEAGE_URL", raising=False)
    promote_recorded(adult_cfg, tmp_path, model_dir, None)
    candidate = _other_model(model_dir, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), registry.FAULT_ENV: fault}
    proc = subprocess.run([sys.executable, "-c", CRASH, str(REPO_ROOT / "configs" / "adult.yaml"),
                           str(tmp_path), str(candidate), "1"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=str(REPO_ROOT))
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert registry.production(adult_cfg, tmp_path)["version"] in (1, 2)
    # the next writer resolves whatever the dead one left, then does its own change
    third = _other_model(model_dir, tmp_path, "third")
    try:
        nxt = promote_recorded(adult_cfg, tmp_path, third, 1)
    except NotPromoted as exc:  # the dead writer's promotion was recorded: it stands
        assert fault in ("after_record", "after_aliases") and "another promotion won" in str(exc)
        nxt = None
    aliases = registry.read_aliases(adult_cfg, tmp_path)
    assert set(aliases["versions"]) == _recorded_versions(tmp_path, adult_cfg), fault
    assert not (registry.root(adult_cfg, tmp_path) / registry.INTENT_FILE).exists()
    if fault in ("after_record", "after_aliases"):
        assert nxt is None and (aliases["production"], aliases["previous"]) == (2, 1)
        assert sha256_tree(registry.root(adult_cfg, tmp_path) / "2") == \
            aliases["hashes"]["2"]["sha256"]
    else:
        assert aliases["production"] == nxt["version"] and aliases["previous"] == 1
    assert not [p for p in registry.root(adult_cfg, tmp_path).iterdir()
                if p.name.startswith(".tmp-")]


def test_lineage_error_at_the_recording_point_leaves_production_unmoved_and_a_retry_promotes(
        adult_cfg, tmp_path, model_dir, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from pipelines.lineage import record

    monkeypatch.delenv("PIPELINES_LINEAGE_URL", raising=False)
    promote_recorded(adult_cfg, tmp_path, model_dir, None)
    candidate = _other_model(model_dir, tmp_path)
    real = record.ExecutionRecord._write_graph
    calls = {"n": 0}

    def flaky(self, status, result, error):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("INSERT INTO events", {}, Exception("disk I/O error"))
        return real(self, status, result, error)

    monkeypatch.setattr(record.ExecutionRecord, "_write_graph", flaky)
    with pytest.raises(OperationalError):
        promote_recorded(adult_cfg, tmp_path, candidate, 1)
    aliases = registry.read_aliases(adult_cfg, tmp_path)
    assert (aliases["production"], aliases["versions"]) == (1, [1])
    assert _recorded_versions(tmp_path, adult_cfg) == {1}
    assert not (registry.root(adult_cfg, tmp_path) / registry.INTENT_FILE).exists()
    retried = promote_recorded(adult_cfg, tmp_path, candidate, 1)  # the Airflow retry
    assert retried["version"] == 2
    assert registry.production(adult_cfg, tmp_path)["version"] == 2
    assert _recorded_versions(tmp_path, adult_cfg) == {1, 2}


def test_rollback_twice_goes_further_back_and_to_any_named_version(adult_cfg, tmp_path,
                                                                     model_dir):
    ctx = RunContext(run_id="t")
    for expected in (None, 1, 2):
        registry.push(adult_cfg, tmp_path, ctx, _other_model(model_dir, tmp_path, f"m{expected}"),
                      expected, {})
    assert registry.rollback(adult_cfg, tmp_path, ctx, reason="3 is bad")["production"][
        "version"] == 2
    second = registry.rollback(adult_cfg, tmp_path, ctx, reason="2 is bad too")
    assert second["production"]["version"] == 1, "a second rollback must not re-promote 3"
    with pytest.raises(PipelineError, match="--to N"):
        registry.rollback(adult_cfg, tmp_path, ctx, reason="nothing before 1")
    pinned = registry.rollback(adult_cfg, tmp_path, ctx, reason="3 was fine after all", to=3)
    assert pinned["production"]["version"] == 3 and pinned["previous"]["version"] == 1
    with pytest.raises(UsageError, match="production already"):
        registry.rollback(adult_cfg, tmp_path, ctx, reason="x", to=3)
    with pytest.raises(UsageError, match="no registered version 9"):
        registry.rollback(adult_cfg, tmp_path, ctx, reason="x", to=9)
    history = registry.read_aliases(adult_cfg, tmp_path)["history"]
    assert [(h["action"], h["production"], h.get("reason")) for h in history] == [
        ("promote", 1, None), ("promote", 2, None), ("promote", 3, None),
        ("rollback", 2, "3 is bad"), ("rollback", 1, "2 is bad too"),
        ("rollback", 3, "3 was fine after all")]
    assert all(h["user"] and h["run_id"] == "t" for h in history)
    # every state is kept as an immutable history entry
    entries = sorted((registry.root(adult_cfg, tmp_path) / registry.HISTORY_DIR).glob("*.json"))
    assert len(entries) == 6 and json.loads(entries[-1].read_text()) == \
        registry.read_aliases(adult_cfg, tmp_path)


@pytest.mark.parametrize("damage", ["deleted", "edited"])
def test_rollback_refuses_a_version_whose_folder_is_missing_or_changed(adult_cfg, tmp_path,
                                                                       model_dir, damage):
    ctx = RunContext(run_id="t")
    registry.push(adult_cfg, tmp_path, ctx, model_dir, None, {})
    registry.push(adult_cfg, tmp_path, ctx, _other_model(model_dir, tmp_path), 1, {})
    v1 = registry.root(adult_cfg, tmp_path) / "1"
    if damage == "deleted":
        shutil.rmtree(v1)
    else:
        (v1 / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(1024))
    before = registry.read_aliases(adult_cfg, tmp_path)
    with pytest.raises(registry.RegistryError,
                       match="is missing" if damage == "deleted" else "no longer matches"):
        registry.rollback(adult_cfg, tmp_path, ctx, reason="x")
    assert registry.read_aliases(adult_cfg, tmp_path) == before


def test_the_registry_copy_must_hash_to_the_evaluated_model(adult_cfg, tmp_path, model_dir):
    evaluated = sha256_tree(model_dir)
    swapped = model_dir / "variables" / "variables.data-00000-of-00001"
    swapped.write_bytes(os.urandom(2 << 20))  # swapped after evaluate
    checked = []
    with pytest.raises(NotPromoted, match="changed since it was evaluated"):
        registry.push(adult_cfg, tmp_path, RunContext(), model_dir, None, {},
                      expected_sha256=evaluated, check=checked.append)
    assert checked == [] and registry.production(adult_cfg, tmp_path) is None
    assert not [p for p in registry.root(adult_cfg, tmp_path).iterdir() if p.name[0].isdigit()]


def test_the_infra_check_runs_on_the_registry_copy_before_the_alias_moves(adult_cfg, tmp_path,
                                                                         model_dir):
    seen = []

    def check(folder):
        seen.append((folder, registry.production(adult_cfg, tmp_path)))
        return {"passed": False, "reasons": ["no serving signature"]}

    with pytest.raises(NotPromoted, match="infra check failed: no serving signature"):
        registry.push(adult_cfg, tmp_path, RunContext(), model_dir, None, {},
                      expected_sha256=sha256_tree(model_dir), check=check)
    assert seen == [(registry.root(adult_cfg, tmp_path) / "1", None)]
    assert registry.read_aliases(adult_cfg, tmp_path)["versions"] == []


def test_a_candidate_identical_to_production_is_already_in_production(adult_cfg, tmp_path,
                                                                      model_dir):
    registry.push(adult_cfg, tmp_path, RunContext(), model_dir, None, {},
                  expected_sha256=sha256_tree(model_dir))
    with pytest.raises(NotPromoted, match="already in production: version 1") as info:
        registry.push(adult_cfg, tmp_path, RunContext(), model_dir, 1, {},
                      expected_sha256=sha256_tree(model_dir))
    assert info.value.result["already_in_production"] is True
    assert registry.read_aliases(adult_cfg, tmp_path)["versions"] == [1]


@pytest.mark.parametrize("damage", ["empty", "garbage", "not a registry", "missing"])
def test_a_damaged_aliases_file_is_a_clear_error_and_repair_rebuilds_it(adult_cfg, tmp_path,
                                                                        model_dir, damage):
    ctx = RunContext(run_id="t")
    registry.push(adult_cfg, tmp_path, ctx, model_dir, None, {})
    registry.push(adult_cfg, tmp_path, ctx, _other_model(model_dir, tmp_path), 1, {})
    good = registry.read_aliases(adult_cfg, tmp_path)
    path = registry.root(adult_cfg, tmp_path) / registry.ALIASES_FILE
    if damage == "missing":
        path.unlink()
    else:
        path.write_text({"empty": "", "garbage": '{"production": 2, "vers',
                         "not a registry": "[1, 2]"}[damage])
    for call in (lambda: registry.list_versions(adult_cfg, tmp_path),
                 lambda: registry.production(adult_cfg, tmp_path),
                 lambda: registry.push(adult_cfg, tmp_path, ctx, model_dir, 2, {}),
                 lambda: registry.rollback(adult_cfg, tmp_path, ctx, reason="x")):
        with pytest.raises(registry.RegistryError) as info:
            call()
        assert str(path) in str(info.value) and "registry repair" in str(info.value)
    # nothing was set aside or changed by the refused writers
    assert _visible_versions(tmp_path, adult_cfg) == [1, 2]
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(tmp_path),
                           "registry", "list", str(REPO_ROOT / "configs" / "adult.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(path) in proc.stderr and "registry repair" in proc.stderr
    repaired = registry.repair(adult_cfg, tmp_path)
    assert repaired["production"] == 2
    assert registry.read_aliases(adult_cfg, tmp_path) == good


def test_every_alias_write_is_fsynced_file_and_folder(adult_cfg, tmp_path, model_dir, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(registry.os, "fsync", spy)
    registry.push(adult_cfg, tmp_path, RunContext(), model_dir, None, {})
    base = str(registry.root(adult_cfg, tmp_path))
    after = synced[synced.index(base + "/" + registry.HISTORY_DIR):]  # the intent's history entry
    aliases_tmp = [i for i, p in enumerate(after) if p.startswith(base + "/.aliases.json.")]
    assert aliases_tmp, synced  # the aliases bytes, before their rename
    assert base in after[aliases_tmp[-1] + 1:], "the folder after the rename"
    synced.clear()
    registry.push(adult_cfg, tmp_path, RunContext(), _other_model(model_dir, tmp_path), 1, {})
    registry.rollback(adult_cfg, tmp_path, RunContext(), reason="x")
    assert any(p.startswith(base + "/.aliases.json.") for p in synced)


def test_cli_rollback_requires_a_reason(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(tmp_path),
                           "registry", "rollback", str(REPO_ROOT / "configs" / "adult.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 2 and "--reason is required" in proc.stderr
