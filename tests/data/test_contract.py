"""The Adult data contract holds on the real data: every demo span, the window and the golden set."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pipelines import snapshots
from pipelines.config import REPO_ROOT
from pipelines.ingest import ingest
from pipelines.validate import validate
from tests.conftest import SPAN_DATES

pytestmark = pytest.mark.slow


def test_suite_is_a_gx_expectation_suite(adult_cfg):
    from great_expectations.core import ExpectationSuite

    raw = json.loads((REPO_ROOT / adult_cfg.validation.expectations).read_text())
    suite = ExpectationSuite(**raw)
    assert len(suite.expectations) == len(raw["expectations"]) >= 30
    columns = raw["expectations"][0]["kwargs"]["column_list"]
    assert columns == adult_cfg.column_names


def test_every_demo_span_is_accepted(adult_cfg, staged, ctx, tmp_path):
    home = tmp_path / "home"
    for i, day in enumerate(SPAN_DATES):
        snap = ingest(adult_cfg, home, ctx, span=day, landing=Path(staged["landing"]))
        result = validate(adult_cfg, home, ctx, snapshot_uri=snap["uri"])
        assert result["status"] == "accepted" and result["failures"] == []
        assert result["expectations"]["failed"] == 0 and result["rows"] == snap["rows"]["total"]
        if i == 0:
            assert result["baseline_uri"] is None and "skipped" in result["drift_note"]
        else:  # consecutive real spans never drift beyond the configured limits
            assert len(result["drift"]) == len(adult_cfg.columns)
            assert all(d["passed"] for d in result["drift"].values())
        assert snapshots.validation_status(snap["uri"]) == "accepted"
        assert Path(result["report_json"]).with_name("drift_profile.json").is_file()


def test_window_snapshot_is_accepted(snapshot):
    result = snapshot["validation"]
    assert result["status"] == "accepted" and result["rows"] == 32561
    assert result["expectations"]["run"] >= 30 and result["expectations"]["failed"] == 0
    assert Path(result["report_html"]).stat().st_size > 10_000


def test_golden_set_is_accepted(adult_cfg, pipeline_home, ctx, snapshot, golden):
    result = validate(adult_cfg, pipeline_home, ctx, snapshot_uri=golden["uri"])
    assert result["status"] == "accepted" and result["rows"] == 16281 and result["golden"]
    assert result["failures"] == [] and all(d["passed"] for d in result["drift"].values())


def test_revalidation_returns_the_stored_result(adult_cfg, pipeline_home, ctx, snapshot):
    again = validate(adult_cfg, pipeline_home, ctx, snapshot_uri=snapshot["uri"])
    assert again["reused"] and again["validated_at"] == snapshot["validation"]["validated_at"]


def test_a_changed_contract_validates_again(adult_cfg, staged, ctx, tmp_path):
    home = tmp_path / "home"
    snap = ingest(adult_cfg, home, ctx, span=SPAN_DATES[0], landing=Path(staged["landing"]))
    first = validate(adult_cfg, home, ctx, snapshot_uri=snap["uri"])
    drift = adult_cfg.validation.drift.model_copy(update={"numeric_js_max": 0.2})
    cfg = adult_cfg.model_copy(update={"validation": adult_cfg.validation.model_copy(
        update={"drift": drift})})
    second = validate(cfg, home, ctx, snapshot_uri=snap["uri"])
    assert not second["reused"] and second["contract_sha256"] != first["contract_sha256"]
    assert snapshots.validation_status(snap["uri"]) == "accepted"
    assert dt.datetime.fromisoformat(second["validated_at"]) >= dt.datetime.fromisoformat(
        first["validated_at"])
