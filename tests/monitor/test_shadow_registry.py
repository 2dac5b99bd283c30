"""The registry under the shadow policy, with TF Serving's config parsed by its own proto.

Small opaque version folders (the registry never looks inside a model); the decision step runs on
hand-written monitoring records through ``runner.run_step`` with the real lineage store (SQLite),
so the promotion or drop is recorded there before the aliases move, as promote's is.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from pipelines import registry, serving_config, shadow, store
from pipelines.config import load_config
from pipelines.context import RunContext
from pipelines.errors import NotPromoted
from tests.eval.conftest import adult_raw
from tests.monitor.test_serving_config import served
from tests.monitor.test_shadow_rules import row

CTX = RunContext(run_id="shadow-registry-test")


def model(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(os.urandom(512))
    (d / "variables" / "variables.index").write_bytes(os.urandom(256))
    return d


@pytest.fixture()
def shadow_cfg_path(tmp_path) -> Path:
    raw = copy.deepcopy(adult_raw())
    raw["promotion"].update(policy="shadow", shadow_spans=2, shadow_margins={"auc": 0.005})
    path = tmp_path / "adult.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def labels(cfg, home) -> tuple[list[int], dict[str, int]]:
    return served(serving_config.path(cfg, home))[2:]


def test_shadow_set_replaced_promoted(adult_cfg, tmp_path):
    home = tmp_path / "home"
    registry.push(adult_cfg, home, CTX, model(tmp_path, "a"), None, {})
    with pytest.raises(registry.UsageError, match="no version in production"):
        registry.push(adult_cfg, tmp_path / "empty", CTX, model(tmp_path, "x"), None, {},
                      alias="shadow")
    out = registry.push(adult_cfg, home, CTX, model(tmp_path, "b"), 1, {}, alias="shadow")
    assert (out["version"], out["alias"], out["replaced_shadow"]) == (2, "shadow", None)
    aliases = registry.read_aliases(adult_cfg, home)
    assert (aliases["production"], aliases["shadow"], aliases["shadow_baseline"]) == (1, 2, 1)
    assert labels(adult_cfg, home) == ([1, 2], {"stable": 1, "canary": 2})
    assert registry.show(adult_cfg, home, "shadow")["aliases"] == ["shadow"]

    out = registry.push(adult_cfg, home, CTX, model(tmp_path, "c"), 1, {}, alias="shadow")
    assert out["replaced_shadow"] == 2  # a newer shadow replaces an undecided one
    assert labels(adult_cfg, home) == ([1, 3], {"stable": 1, "canary": 3})
    with pytest.raises(NotPromoted, match="shadow version 3 against production 2"):
        registry.promote_shadow(adult_cfg, home, CTX, 3, 2, {})  # stale decision: refused

    registry.promote_shadow(adult_cfg, home, CTX, 3, 1, {"spans_judged": ["d1", "d2"]})
    aliases = registry.read_aliases(adult_cfg, home)
    assert (aliases["production"], aliases["previous"], aliases["shadow"]) == (3, 1, None)
    assert aliases["stack"] == [1, 3]
    assert labels(adult_cfg, home) == ([3], {"stable": 3})
    actions = [h["action"] for h in aliases["history"]]
    assert actions == ["promote", "shadow", "shadow", "shadow_promote"]
    lines = [registry.describe_shadow_event(h)
             for h in registry.shadow_history(adult_cfg, home)["events"]]
    assert "replacing the undecided version 2" in lines[1]
    assert "shadow version 3 PROMOTED to production (previous 1) on spans d1, d2" in lines[2]
    registry.rollback(adult_cfg, home, CTX, reason="test")  # rollback after it: back to 1
    assert labels(adult_cfg, home) == ([1], {"stable": 1})


def test_shadow_dropped_and_cleared_by_rollback_or_promote(adult_cfg, tmp_path):
    home = tmp_path / "home"
    registry.push(adult_cfg, home, CTX, model(tmp_path, "a"), None, {})
    registry.push(adult_cfg, home, CTX, model(tmp_path, "b"), 1, {})
    registry.push(adult_cfg, home, CTX, model(tmp_path, "c"), 2, {}, alias="shadow")
    registry.drop_shadow(adult_cfg, home, CTX, 3, 2, ["live auc on overall: worse"], spans=["d1"])
    aliases = registry.read_aliases(adult_cfg, home)
    assert (aliases["production"], aliases["shadow"]) == (2, None) and 3 in aliases["versions"]
    assert aliases["history"][-1]["reasons"] == ["live auc on overall: worse"]
    assert labels(adult_cfg, home) == ([2], {"stable": 2})

    # rollback while a shadow is pending: the shadow was judged against the production that leaves
    registry.push(adult_cfg, home, CTX, model(tmp_path, "d"), 2, {}, alias="shadow")
    out = registry.rollback(adult_cfg, home, CTX, reason="bad model")
    assert out["shadow_cleared"]["version"] == 4
    assert "rolled back from 2 to 1" in out["shadow_cleared"]["why"]
    assert registry.shadow(adult_cfg, home) is None
    assert labels(adult_cfg, home) == ([1], {"stable": 1})

    # a promotion to production (policy auto) clears a pending shadow too
    registry.push(adult_cfg, home, CTX, model(tmp_path, "e"), 1, {}, alias="shadow")
    out = registry.push(adult_cfg, home, CTX, model(tmp_path, "f"), 1, {})
    assert out["shadow_cleared"]["version"] == 5 and registry.shadow(adult_cfg, home) is None
    cleared = [h for h in registry.shadow_history(adult_cfg, home)["events"]
               if h.get("shadow_cleared")]
    assert [h["action"] for h in cleared] == ["rollback", "promote"]


def write_record(cfg, home, span_, prod, shadow_v, rows, created):
    folder = store.path(home, store.Kind.MONITORING, cfg.name, f"{span_}-{created[-9:-1]}")
    folder.mkdir(parents=True)
    rec = {"span": span_, "created_at": created, "pipeline": cfg.name, "alarms": [], "checks": [],
           "snapshot": {"rows": 4500}, "production": {"version": prod}, "shadow": {
               "version": shadow_v, "excluded": None, "agreement_rate": 0.97,
               "comparisons": shadow.compare(cfg, rows, "candidate", "baseline")}}
    (folder / "monitoring.json").write_text(json.dumps(rec))
    return folder


@pytest.mark.parametrize("shadow_auc,decision", [(0.903, "promote"), (0.85, "drop")])
def test_decision_is_recorded_in_lineage_before_the_aliases_move(
        tmp_path, shadow_cfg_path, shadow_auc, decision):
    cfg, home = load_config(shadow_cfg_path), tmp_path / "home"
    registry.push(cfg, home, CTX, model(tmp_path, "a"), None, {})
    registry.push(cfg, home, CTX, model(tmp_path, "b"), 1, {}, alias="shadow")
    since = registry.shadow(cfg, home)["since"]
    rows = [row("overall", {"auc": 0.905}, {"auc": shadow_auc}, n=4500)]
    write_record(cfg, home, "2026-11-21", 1, 2, rows, since + "1")
    first = shadow.run(shadow_cfg_path, CTX, home)
    assert (first["decision"], first["counted"], first["needed"]) == ("waiting", ["2026-11-21"], 2)
    write_record(cfg, home, "2026-11-22", 1, 2, rows, since + "2")

    out = shadow.run(shadow_cfg_path, CTX, home)
    assert out["decision"] == decision and out["spans_judged"] == ["2026-11-21", "2026-11-22"]
    aliases = registry.read_aliases(cfg, home)
    assert aliases["shadow"] is None
    assert aliases["production"] == (2 if decision == "promote" else 1)
    assert labels(cfg, home) == (([2], {"stable": 2}) if decision == "promote"
                                 else ([1], {"stable": 1}))
    if decision == "drop":
        assert "live auc on overall: shadow 0.8500 vs production 0.9050" in out["message"]
        assert aliases["history"][-1]["reasons"] == out["reasons"]
    else:
        assert aliases["previous"] == 1 and "PROMOTED to production (was 1)" in out["message"]

    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{home / 'lineage.db'}")
    with engine.connect() as conn:
        events = conn.execute(text(
            "select e.type, a.kind, a.uri from artifacts a join events e on e.artifact_id = a.id "
            "join executions x on x.id = e.execution_id where x.step = 'shadow' "
            "and x.status = 'completed'")).all()
    kinds = sorted((t, k) for t, k, _ in events)
    assert kinds.count(("input", "MonitoringResult")) == 2
    assert ("output", "RegistryAliases") in kinds
    assert (("output", "ModelVersion") in kinds) == (decision == "promote")
    assert shadow.run(shadow_cfg_path, CTX, home)["decision"] is None  # nothing pending now

    from pipelines import monitor_report

    html = monitor_report.write(cfg, home).read_text()  # the decision marked on its last span
    word = "PROMOTED" if decision == "promote" else "DROPPED"
    row_ = html.split("data-span='2026-11-22'>")[1].split("</tr>")[0]
    assert f"<b class='decision'>shadow v2 {word}</b>" in row_
    assert "class='decision'" not in html.split("data-span='2026-11-22'>")[0]
    assert f"shadow version 2 {word}" in html.split("id='shadow-events'>")[1]
    assert "data-metric='shadow worse by: auc overall'" in html


@pytest.fixture()
def trusted(monkeypatch):
    """promote's evidence and infra check (our own logic, tested in tests/eval) taken as passed:
    these tests are about what the policy does with a blessed candidate."""
    from pipelines import infra_check, promote

    monkeypatch.setattr(promote, "evidence_problems", lambda *a, **k: [])
    monkeypatch.setattr(infra_check, "check", lambda *a, **k: {"passed": True, "reasons": []})


def blessed_evaluation(tmp_path, name, baseline):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "evaluation.json").write_text(json.dumps({
        "pipeline": "adult", "blessed": True, "reasons": [], "evaluation_id": name,
        "baseline": baseline, "metrics": {}, "data": {"eval": [{"uri": str(tmp_path / "snap")}]}}))
    return folder


def test_promote_under_shadow_sets_the_shadow_not_production(tmp_path, shadow_cfg_path, trusted):
    from pipelines import flow
    from pipelines.lineage import audit

    cfg, home = load_config(shadow_cfg_path), tmp_path / "home"
    ctx = RunContext(run_id="shadow-promote")

    def promote(model_name, baseline):
        m = model(tmp_path, model_name)
        ev = blessed_evaluation(tmp_path, f"ev-{model_name}", baseline)
        return flow.promote(shadow_cfg_path, ctx, {"model_uri": str(m), "evaluation_uri": str(ev)},
                            home=home)

    first = promote("a", None)  # nothing in production to judge a shadow against
    assert first["promoted"] and first["version"] == 1 and not first["shadow"]
    assert "went to production directly" in first["reasons"][0]

    second = promote("b", {"version": 1})
    assert (second["promoted"], second["shadow"], second["version"]) == (False, True, 2)
    assert "scored beside production version 1 on the next 2 labelled span(s)" in \
           second["reasons"][0]
    assert registry.production(cfg, home)["version"] == 1
    assert labels(cfg, home) == ([1, 2], {"stable": 1, "canary": 2})

    third = promote("c", {"version": 1})  # a newer candidate replaces the undecided shadow
    assert third["shadow"] and "replaces the undecided shadow version 2" in third["reasons"][1]
    assert registry.shadow(cfg, home)["version"] == 3

    runs = audit.list_runs(home, cfg.name)["runs"]
    assert runs[0]["outcome"] == "shadow" and "version 3 is the shadow candidate" in runs[0]["why"][0]
