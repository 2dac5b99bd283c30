"""The `shadow` promotion policy under the real scheduler: promoted after N good spans, a worse
candidate dropped with its reasons (issue 12).

The session's Airflow (tests/e2e/conftest.py) runs monitor_adult_shadow, a variant with
``promotion.policy: shadow`` and ``shadow_spans: 2``. Production is the session's trained model
(tests/conftest.py ``trained``), pushed into this variant's registry. Two candidates go through the
registry's shadow path (what promote does under this policy; its policy branch is covered in
tests/monitor/test_shadow_registry.py without TFMA):

* good: the same network retrained with another seed on the same transformed data (of equal
  quality, not equal bytes) -> scored beside production on two spans of unseen Adult rows
  (adult.test) -> promoted: production moves, ``previous`` is set, TF Serving's ``stable`` follows;
* worse: the network trained for a single gradient step, as if hostile params got through -> two
  more spans -> dropped, the reasons naming the metric and the slice, production unchanged.

Each monitor run is a real DAG run (monitor_span, shadow_decision, dashboard, alarm) triggered
through the REST API with the span as a param.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from pipelines import registry, serving_config
from pipelines.config import load_config
from pipelines.context import RunContext
from tests.e2e.harness import production_alias, run
from tests.monitor import spans

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "adult_shadow"
MONITOR = f"monitor_{NAME}"
# Spans of unseen rows, dated far from the session's staged spans (never in a training window).
SPANS = [dt.date(2021, 3, d) for d in (1, 2, 3, 4)]
OVERRIDES = {
    "promotion": {"policy": "shadow", "shadow_spans": 2,
                  # overall within 0.01 AUC, every slice of >= 200 pooled rows within 0.05
                  "shadow_margins": {"auc": 0.01, "slice_auc": 0.05}},
    "schedule": {"cron": None},
    "monitoring": {"schedule": None, "retrain_on_alarm": False},
}


@pytest.fixture(scope="module")
def variant(scheduler):
    scheduler.add_config(NAME, base="adult", overrides=OVERRIDES)
    scheduler.unpause(MONITOR)
    for i, day in enumerate(SPANS):
        spans.clean(scheduler.home, day, part=i)
    yield load_config(scheduler.configs / f"{NAME}.yaml")
    scheduler.pause(MONITOR)


def _model(cfg, pipeline_home, ctx, transformed, **model):
    from pipelines.train import train

    variant_cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update=model)})
    return train(variant_cfg, pipeline_home, ctx, transform_uri=transformed["transform_uri"])


def _monitor(scheduler, day: dt.date) -> dict:
    # the logical date must not precede the DAG's start_date (else the run has no task at all)
    logical = dt.date(2026, 2, 1) + (day - SPANS[0])
    run_id = scheduler.api.trigger(logical, {"span": day.isoformat()}, dag_id=MONITOR)
    state = scheduler.api.wait_run(run_id, timeout=600, dag_id=MONITOR)
    tasks = scheduler.api.task_states(run_id, dag_id=MONITOR)
    assert state == "success", f"{tasks}\n{scheduler.explain()}"
    assert tasks["monitor_span"] == tasks["shadow_decision"] == "success", tasks
    return {"tasks": tasks, "run_id": run_id,
            "monitor": scheduler.api.xcom(run_id, "monitor_span", dag_id=MONITOR),
            "decision": scheduler.api.xcom(run_id, "shadow_decision", dag_id=MONITOR)}


def _labels(cfg, home) -> dict[str, int]:
    config = text_format.Parse(serving_config.path(cfg, home).read_text(),
                               model_server_config_pb2.ModelServerConfig())
    return dict(config.model_config_list.config[0].version_labels)


@pytest.fixture(scope="module")
def good(scheduler, variant, adult_cfg, trained, pipeline_home, ctx, transformed):
    home = scheduler.home
    push_ctx = RunContext(run_id="shadow-e2e-push", triggered_by="test")
    registry.push(variant, home, push_ctx, trained["model_uri"], None,
                  {"model_uri": trained["model_uri"]})
    candidate = _model(adult_cfg, pipeline_home, ctx, transformed, seed=43)
    pushed = registry.push(variant, home, push_ctx, candidate["model_uri"], 1,
                           {"model_uri": candidate["model_uri"]}, alias="shadow")
    assert pushed["version"] == 2 and _labels(variant, home) == {"stable": 1, "canary": 2}
    return [_monitor(scheduler, day) for day in SPANS[:2]]


@pytest.fixture(scope="module")
def worse(scheduler, variant, good, adult_cfg, pipeline_home, ctx, transformed):
    candidate = _model(adult_cfg, pipeline_home, ctx, transformed, epochs=1, batch_size=1 << 20,
                       early_stopping_patience=0)
    registry.push(variant, scheduler.home, RunContext(run_id="shadow-e2e-worse"),
                  candidate["model_uri"], 2, {"model_uri": candidate["model_uri"]},
                  alias="shadow")
    return [_monitor(scheduler, day) for day in SPANS[2:]]


def test_good_candidate_is_promoted_after_two_spans(scheduler, variant, good):
    first, second = good
    assert first["monitor"]["shadow_version"] == 2
    assert first["decision"]["decision"] == "waiting" and first["decision"]["counted"] == [
        SPANS[0].isoformat()]
    decided = second["decision"]
    assert decided["decision"] == "promote", decided
    assert decided["spans_judged"] == [d.isoformat() for d in SPANS[:2]]
    overall = next(d for d in decided["deltas"] if d["slice"] == "overall")
    assert overall["spans"] == 2 and overall["worse_by"] <= 0.01
    assert "shadow version 2 PROMOTED to production (was 1)" in decided["message"]
    aliases = production_alias(scheduler.home, NAME)
    assert (aliases["production"], aliases["previous"], aliases["shadow"]) == (2, 1, None)
    assert aliases["history"][-1]["action"] == "shadow_promote"
    events = scheduler.api.get(f"/api/v2/assets/events?source_dag_id={MONITOR}")["asset_events"]
    promoted = [e for e in events if e["uri"].endswith(f"{NAME}/registry/production")]
    assert len(promoted) == 1 and promoted[0]["extra"]["version"] == 2


def test_worse_candidate_is_dropped_with_reasons(scheduler, variant, worse):
    first, second = worse
    assert first["decision"]["decision"] == "waiting"
    decided = second["decision"]
    assert decided["decision"] == "drop", decided
    assert decided["shadow_version"] == 3 and decided["production_version"] == 2
    assert any(r.startswith("live auc on overall: shadow ") and "> margin 0.01" in r
               for r in decided["reasons"]), decided["reasons"]
    assert any(r.startswith("live auc on sex=") for r in decided["reasons"]), decided["reasons"]
    aliases = production_alias(scheduler.home, NAME)
    assert (aliases["production"], aliases["shadow"]) == (2, None)
    assert aliases["history"][-1]["reasons"] == decided["reasons"]
    assert _labels(variant, scheduler.home) == {"stable": 2}  # TF Serving follows


def test_decisions_in_the_dashboard_lineage_and_registry_output(scheduler, variant, worse):
    html = (scheduler.home / "reports" / NAME / "monitoring.html").read_text()
    assert "shadow v2 PROMOTED" in html and "shadow v3 DROPPED" in html
    assert "shadow worse by: auc overall" in html
    cli = shutil.which("pipelines", path=scheduler.env["PATH"]) or "pipelines"
    listed = run([cli, "registry", "list", str(scheduler.configs / f"{NAME}.yaml"), "--json"],
                 scheduler.env)
    doc = json.loads(listed.stdout)
    actions = [h["action"] for h in doc["shadow"]["events"]]
    assert actions == ["shadow", "shadow_promote", "shadow", "shadow_drop"]
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{scheduler.home / 'lineage.db'}")
    with engine.connect() as conn:
        steps = conn.execute(text(
            "select x.status, x.dag_id from executions x where x.step = 'shadow' "
            "and x.pipeline = :p"), {"p": NAME}).all()
    assert sorted(steps) == [("completed", MONITOR), ("completed", MONITOR)]
