"""Stand-in step functions for the DAG behaviour tests: contract-shaped results, no heavy stack.

Used only by tests/dags/test_dag_behaviour.py, which points ``runner.STEPS`` here inside a real
`dag.test()` run, so the gates, skips and callbacks of the real DAG run in seconds. ``FAKE_MODE``
selects the outcome: ``blessed`` (default), ``not_blessed``, ``rejected`` or ``refused`` (blessed,
then refused at promote with two reasons).
"""

from __future__ import annotations

import json
import os

from pipelines.errors import DataRejected, NotPromoted
from pipelines.results import artifact


def _mode() -> str:
    return os.environ.get("FAKE_MODE", "blessed")


def ingest(cfg, home, ctx, span=None, window=1, golden=False, landing=None):
    uri = str(home / ("golden" if golden else f"snap-{span}-{window}"))
    (home / "ingest-ctx.json").write_text(json.dumps(ctx.to_dict()))
    return {"inputs": [], "outputs": [artifact("snapshot", uri, "s" * 64)], "snapshot_id": uri[-8:],
            "uri": uri, "reused": False, "golden": golden, "spans": [str(span)] * window,
            "rows": {"total": 10}, "malformed_rows": 0, "provenance_uri": uri + "/p.json",
            "sha256": "s" * 64}


def validate(cfg, home, ctx, snapshot_uri):
    if _mode() == "rejected":
        raise DataRejected("2 of 40 expectations failed:\nage out of [17, 90]\nsex not in set",
                           {"status": "rejected", "inputs": [], "outputs": []})
    return {"inputs": [], "outputs": [], "status": "accepted", "snapshot_uri": snapshot_uri,
            "expectations": {}, "failures": [], "baseline_uri": None,
            "report_html": str(home / "v.html")}


def transform(cfg, home, ctx, snapshot_uris):
    return {"inputs": [], "outputs": [], "transform_uri": str(home / "t"), "sha256": "t",
            "transform_graph_uri": str(home / "t" / "g"), "transformed": {}}


def train(cfg, home, ctx, transform_uri, warm_start_from=None):
    return {"inputs": [], "outputs": [], "model_uri": str(home / "m"), "model_id": "m1",
            "sha256": "m" * 64, "metrics": {"auc": 0.9}}


def evaluate(cfg, home, ctx, model_uri, snapshot_uris, golden_uri=None, threshold_overrides=None):
    blessed = _mode() in ("blessed", "refused")
    return {"inputs": [], "outputs": [], "evaluation_uri": str(home / "e"), "blessed": blessed,
            "reasons": [] if blessed else ["overall auc 0.80 < 0.90"], "baseline": None,
            "metrics": {}, "overrides": threshold_overrides}


REFUSAL_REASONS = ["infra check failed: serving_default returned NaN for 3 of 50 examples",
                   "production moved from version 6 to 8 since the evaluation"]


def promote(cfg, home, ctx, model_uri, evaluation_uri):
    if _mode() == "refused":
        raise NotPromoted("model not promoted:\n" + "\n".join(REFUSAL_REASONS),
                          {"inputs": [], "outputs": [], "promoted": False, "version": None,
                           "registry_uri": None, "previous_version": 6,
                           "reasons": REFUSAL_REASONS})
    return {"inputs": [], "outputs": [], "promoted": True, "version": 7,
            "registry_uri": str(home / "registry" / "7"), "previous_version": None, "reasons": []}


def report(cfg, home, ctx, evaluation_uri, promotion=None):
    (home / "report-promotion.json").write_text(json.dumps(promotion))
    return {"inputs": [], "outputs": [], "report_html": str(home / "r.html"),
            "promotion": promotion}
