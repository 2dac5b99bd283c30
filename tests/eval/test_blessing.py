"""Unit tests of the gate logic (pipelines.blessing) on hand-made TFMA rows: no TensorFlow."""

from __future__ import annotations

import pytest

from pipelines import blessing
from pipelines.common import UsageError


def _row(dataset, slice_=None, n=1000, auc=0.93, fnr=0.3, base_auc=None):
    slice_ = slice_ or {}
    row = {"dataset": dataset, "spec": sorted(slice_), "slice": slice_,
           "name": ", ".join(f"{k}={v}" for k, v in slice_.items()) or "overall",
           "candidate": {"example_count": n, "auc": auc, "fnr": fnr}}
    if base_auc is not None:
        row["baseline"] = {"example_count": n, "auc": base_auc, "fnr": fnr}
    return row


def _rows(**kw):
    return [_row("golden", base_auc=kw.get("base")),
            _row("golden", {"sex": "Female"}, fnr=kw.get("fnr_f", 0.45)),
            _row("golden", {"sex": "Male"}, fnr=0.35),
            _row("golden", {"race": "Other"}, n=50, auc=0.6),
            _row("golden", {"age_bucket": "65+"}, n=500, auc=kw.get("age_auc", 0.9))]


def test_good_candidate_is_blessed_and_small_slices_are_reported_not_gated(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    blessed, reasons, checks = blessing.decide(adult_cfg, _rows(), th, has_baseline=False)
    assert blessed, reasons
    small = [c for c in checks if c["slice"] == "race=Other"]
    assert small[0]["passed"] is None and "min_slice_size" in small[0]["note"]
    assert {c["threshold"] for c in checks} >= {"overall_auc_min", "slice_auc_min", "fnr_gap_max"}


def test_failing_slice_is_named(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    blessed, reasons, _ = blessing.decide(adult_cfg, _rows(age_auc=0.8), th, has_baseline=False)
    assert not blessed and len(reasons) == 1 and "age_bucket=65+" in reasons[0]


def test_change_threshold_and_fairness_gap(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    blessed, reasons, _ = blessing.decide(adult_cfg, _rows(base=0.94, fnr_f=0.6), th, True)
    assert not blessed
    assert any("auc_max_drop" in r for r in reasons)
    assert any("fnr_gap_max" in r and "sex=Female" in r for r in reasons)


def test_no_thresholds_is_never_blessed(adult_cfg):
    cfg = adult_cfg.model_copy(update={"evaluation": adult_cfg.evaluation.model_copy(
        update={"thresholds": None})})
    th = blessing.effective_thresholds(cfg, None)
    blessed, reasons, checks = blessing.decide(cfg, _rows(), th, has_baseline=False)
    assert th is None and not blessed and not checks and "no thresholds" in reasons[0]


@pytest.mark.parametrize("overrides, message", [
    ({"slice_auc_min": 0.5}, "outside its allowed range"),
    ({"auc_min": 0.9}, "not a threshold"),
    ({"overall_auc_min": "0.9"}, "not a finite number"),
    ({"overall_auc_min": float("nan")}, "not a finite number"),
])
def test_overrides_outside_bounds_are_rejected(adult_cfg, overrides, message):
    with pytest.raises(UsageError, match=message):
        blessing.effective_thresholds(adult_cfg, overrides)


def test_override_within_bounds_applies(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, {"slice_auc_min": 0.8})
    assert th["slice_auc_min"] == 0.8 and th["overall_auc_min"] == 0.90


@pytest.mark.parametrize("flag", ["slice_auc_min=0.5", "slice_auc_min", "fairness_feature=1"])
def test_cli_rejects_bad_threshold_override_with_exit_2(tmp_path, flag):
    import subprocess
    import sys

    from pipelines.config import REPO_ROOT

    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "evaluate", str(REPO_ROOT / "configs/adult.yaml"),
         "--model", str(tmp_path), "--threshold", flag],
        capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
        env={"PATH": "/usr/bin:/bin", "PIPELINES_HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert "threshold" in proc.stderr
