"""Registry behaviour in real processes: SIGKILL mid-promotion, concurrent promotions, rollback.

The registry treats a model as an opaque folder, so these tests push a small folder of files; the
end-to-end tests in test_promotion.py push the real trained SavedModel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines import registry
from pipelines.config import REPO_ROOT
from pipelines.context import RunContext
from pipelines.errors import NotPromoted
from pipelines.hashing import sha256_tree

PUSH = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from pipelines import registry
    from pipelines.context import RunContext
    from pipelines.errors import NotPromoted
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
    assert registry.previous(adult_cfg, tmp_path)["version"] == 2
    history = registry.read_aliases(adult_cfg, tmp_path)["history"]
    assert [h["action"] for h in history] == ["promote", "promote", "rollback"]
    assert history[-1]["reason"] == "bad canary"


@pytest.mark.parametrize("fault", ["after_copy", "after_publish"])
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
