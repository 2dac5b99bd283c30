"""Unit tests of our own logic behind the DAG: trigger-param resolution, task chaining, notifier.

The chaining test replaces ``runner.run_step`` with a recorder (the steps themselves are tested with
the real stack elsewhere); the notifier test posts to a real local HTTP server.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

import pytest

from pipelines import flow, notify
from pipelines.config import REPO_ROOT
from pipelines.context import RunContext
from pipelines.errors import NotPromoted, UsageError
from pipelines.params import param_schemas, resolve_params

CONFIG = REPO_ROOT / "configs" / "adult.yaml"


def test_defaults_come_from_config_and_logical_date(adult_cfg):
    p = resolve_params(adult_cfg, {}, dt.date(2026, 11, 20))
    assert p == {"span": "2026-11-20", "window": adult_cfg.window, "force": False,
                 "threshold_overrides": {}}


def test_params_override_config(adult_cfg):
    p = resolve_params(adult_cfg, {"span": "2026-11-18", "window": 3, "force": True,
                                   "threshold_slice_auc_min": 0.82}, dt.date(2026, 11, 20))
    assert p["span"] == "2026-11-18" and p["window"] == 3 and p["force"] is True
    assert p["threshold_overrides"] == {"slice_auc_min": 0.82}


@pytest.mark.parametrize("raw,needle", [
    ({"span": "yesterday"}, "span"),
    ({"window": 0}, "window"),
    ({"window": True}, "window"),
    ({"force": "true"}, "force"),
    ({"threshold_overall_auc_min": 0.2}, "threshold_overall_auc_min"),
    ({"threshold_fairness_feature": 1}, "unknown param"),
    ({"epochs": 3}, "unknown param"),
])
def test_bad_params_are_usage_errors_naming_the_param(adult_cfg, raw, needle):
    with pytest.raises(UsageError, match=needle):
        resolve_params(adult_cfg, raw, dt.date(2026, 11, 20))


def test_span_is_required_without_logical_date(adult_cfg):
    with pytest.raises(UsageError, match="span"):
        resolve_params(adult_cfg, {})


def test_threshold_params_follow_override_bounds(adult_cfg):
    schemas = param_schemas(adult_cfg)
    for name, (low, high) in adult_cfg.evaluation.override_bounds.items():
        assert schemas[f"threshold_{name}"]["minimum"] == low
        assert schemas[f"threshold_{name}"]["maximum"] == high


class Recorder:
    """Stands in for runner.run_step: records calls and returns contract-shaped results."""

    def __init__(self, blessed=True, promoted=True):
        self.calls, self.blessed, self.promoted = [], blessed, promoted

    def __call__(self, step, cfg, home, ctx, **kw):
        self.calls.append((step, kw))
        if step == "ingest":
            uri = "/s/golden" if kw.get("golden") else "/s/snap"
            return {"snapshot_id": uri[-4:], "uri": uri, "sha256": "a", "reused": False,
                    "spans": ["2026-11-20"], "rows": {}, "malformed_rows": 0, "inputs": [],
                    "outputs": [], "provenance_uri": uri + "/provenance.json"}
        return {
            "validate": {"status": "accepted", "snapshot_uri": kw.get("snapshot_uri"),
                         "expectations": {}, "failures": [], "baseline_uri": None,
                         "report_html": "/v.html"},
            "transform": {"transform_uri": "/t/1", "transform_graph_uri": "/t/1/g",
                          "transformed": {}, "sha256": "t"},
            "train": {"model_uri": "/m/1", "model_id": "1", "sha256": "b", "metrics": {}},
            "evaluate": {"evaluation_uri": "/e/1", "blessed": self.blessed, "reasons": ["auc low"],
                         "baseline": None, "metrics": {}},
            "promote": {"promoted": self.promoted, "version": 1, "registry_uri": "/r/1",
                        "previous_version": None, "reasons": ["infra check failed"]},
            "report": {"report_html": "/rep.html"},
        }[step]


def test_chain_passes_each_result_downstream(monkeypatch, tmp_path):
    rec = Recorder()
    monkeypatch.setattr(flow.runner, "run_step", rec)
    done = flow.run_chain(CONFIG, RunContext(), {"span": "2026-11-20", "window": 2,
                                                 "threshold_overall_auc_min": 0.88}, home=tmp_path)
    steps = [s for s, _ in rec.calls]
    assert steps == ["ingest", "ingest", "validate", "transform", "train", "evaluate", "promote",
                     "report"]
    kw = dict(rec.calls)
    assert rec.calls[0][1] == {"span": dt.date(2026, 11, 20), "window": 2}
    assert rec.calls[1][1] == {"golden": True}
    assert kw["transform"] == {"snapshot_uris": ["/s/snap"]}
    assert kw["train"] == {"transform_uri": "/t/1"}
    assert kw["evaluate"] == {"model_uri": "/m/1", "snapshot_uris": ["/s/snap"],
                              "golden_uri": "/s/golden",
                              "threshold_overrides": {"overall_auc_min": 0.88}}
    assert kw["promote"] == {"model_uri": "/m/1", "evaluation_uri": "/e/1"}
    assert kw["report"]["promotion"]["version"] == 1
    assert done["report"] == {"report_html": "/rep.html"}


def test_chain_skips_promote_when_not_blessed(monkeypatch, tmp_path):
    rec = Recorder(blessed=False)
    monkeypatch.setattr(flow.runner, "run_step", rec)
    done = flow.run_chain(CONFIG, RunContext(), {"span": "2026-11-20"}, home=tmp_path)
    assert "promote" not in [s for s, _ in rec.calls]
    assert done["promote"] is None and done["not_promoted"] == ["auc low"]
    assert dict(rec.calls)["report"]["promotion"] is None


def test_refused_push_is_not_promoted(monkeypatch, tmp_path):
    monkeypatch.setattr(flow.runner, "run_step", Recorder(promoted=False))
    with pytest.raises(NotPromoted, match="infra check failed"):
        flow.promote(CONFIG, RunContext(), {"model_uri": "/m/1", "evaluation_uri": "/e/1"},
                     home=tmp_path)


def test_notifier_logs_and_posts_to_a_webhook(caplog):
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    target = {"conn_type": "http", "host": "127.0.0.1", "port": server.server_port,
              "schema": "hooks/fail"}
    with caplog.at_level("ERROR", logger="pipelines.notify"):
        assert notify.notify("retrain_adult.validate failed: data rejected", target) is True
    server.server_close()
    assert received == [{"text": "retrain_adult.validate failed: data rejected"}]
    assert caplog.records[-1].getMessage() == "retrain_adult.validate failed: data rejected"


def test_notifier_never_raises_on_a_dead_webhook():
    target = {"conn_type": "http", "host": "127.0.0.1", "port": 9}
    assert notify.notify("x failed", target) is False


def test_force_reaches_every_step_that_reuses_artifacts(monkeypatch, tmp_path):
    rec = Recorder()
    monkeypatch.setattr(flow.runner, "run_step", rec)
    flow.run_chain(CONFIG, RunContext(), {"span": "2026-11-20", "force": True}, home=tmp_path)
    forced = [step for step, kw in rec.calls if kw.get("force") is True]
    assert forced == ["ingest", "ingest", "validate", "transform", "train"]
    # Every step handed force accepts it (evaluations are always new, so evaluate gets none).
    import inspect

    from pipelines import runner
    for step in set(forced):
        assert "force" in inspect.signature(runner.step_function(step)).parameters, step


def test_pipelines_run_ids_never_collide(monkeypatch, tmp_path):
    """Three `pipelines run` started within one second get three run ids (lineage groups a run's
    executions by its id; a collision would merge two runs)."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    seen = []

    def chain(config, ctx, params, home, **hooks):
        seen.append(ctx.run_id)
        return {"promote": {"version": 1, "registry_uri": "/r/1"},
                "report": {"report_html": "/r.html"}}

    monkeypatch.setattr(flow, "run_chain", chain)
    for _ in range(3):
        result = CliRunner().invoke(app, ["--home", str(tmp_path), "run", str(CONFIG),
                                          "--span", "2026-11-20"])
        assert result.exit_code == 0, result.output
    assert len(set(seen)) == 3 and all(r.startswith("cli__") and r.endswith("__2026-11-20")
                                       for r in seen)
