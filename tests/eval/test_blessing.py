"""Unit tests of the gate logic (pipelines.blessing) on hand-made TFMA rows, per task: no TensorFlow.

The gates come from config.GATES through the config's evaluation.thresholds; the rows have the
shape eval_tfma.load_rows writes (metrics per model, None plus a reason where undefined).
"""

from __future__ import annotations

import pytest

from pipelines import blessing
from pipelines.errors import UsageError
from tests.eval.conftest import task_config


def _row(dataset, slice_=None, n=1000, base=None, undefined=None, **metrics):
    slice_ = slice_ or {}
    row = {"dataset": dataset, "spec": sorted(slice_), "slice": slice_,
           "name": ", ".join(f"{k}={v}" for k, v in slice_.items()) or "overall",
           "candidate": {"example_count": n, **metrics}, "undefined": {}}
    if base is not None:
        row["baseline"] = {"example_count": n, **base}
    if undefined:
        row["undefined"]["candidate"] = undefined
        for m in undefined:
            row["candidate"][m] = None
    return row


# --- binary (configs/adult.yaml: overall_auc_min 0.90, slice_auc_min 0.84, auc_max_drop 0.005,
#     fairness fnr gap across sex <= 0.20) ---

def _binary_rows(base=None, fnr_f=0.45, age_auc=0.9):
    return [_row("golden", auc=0.93, fnr=0.3, base={"auc": base, "fnr": 0.3} if base else None),
            _row("golden", {"sex": "Female"}, auc=0.93, fnr=fnr_f),
            _row("golden", {"sex": "Male"}, auc=0.93, fnr=0.35),
            _row("golden", {"race": "Other"}, n=50, auc=0.6, fnr=0.3),
            _row("golden", {"age_bucket": "65+"}, n=500, auc=age_auc, fnr=0.3)]


def test_binary_good_candidate_is_blessed_and_small_slices_are_reported_not_gated(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    blessed, reasons, checks = blessing.decide(adult_cfg, _binary_rows(), th, has_baseline=False)
    assert blessed, reasons
    small = [c for c in checks if c["slice"] == "race=Other"]
    assert small[0]["passed"] is None and "min_slice_size" in small[0]["note"]
    assert {c["threshold"] for c in checks} == {"overall_auc_min", "slice_auc_min",
                                                "auc_max_drop", "fairness_max_gap"}


def test_binary_failing_slice_is_named(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    blessed, reasons, _ = blessing.decide(adult_cfg, _binary_rows(age_auc=0.8), th, False)
    assert not blessed and len(reasons) == 1 and "age_bucket=65+" in reasons[0]


def test_binary_change_threshold_and_fairness_gap(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    blessed, reasons, _ = blessing.decide(adult_cfg, _binary_rows(base=0.94, fnr_f=0.6), th, True)
    assert not blessed
    assert any("auc_max_drop" in r for r in reasons)
    assert any("fairness_max_gap" in r and "sex=Female" in r for r in reasons)


def test_undefined_metric_on_a_one_class_slice_is_not_gated(adult_cfg):
    why = "the slice holds one class only (0 positive, 400 negative): ROC AUC needs both"
    rows = _binary_rows() + [_row("golden", {"race": "Amer-Indian-Eskimo"}, n=400, fnr=None,
                                  undefined={"auc": why})]
    th = blessing.effective_thresholds(adult_cfg, None)
    blessed, reasons, checks = blessing.decide(adult_cfg, rows, th, has_baseline=False)
    assert blessed, reasons
    check = next(c for c in checks if c["slice"] == "race=Amer-Indian-Eskimo")
    assert check["passed"] is None and check["value"] is None and why in check["note"]


def test_no_thresholds_is_never_blessed(adult_cfg):
    cfg = adult_cfg.model_copy(update={"evaluation": adult_cfg.evaluation.model_copy(
        update={"thresholds": {}})})
    th = blessing.effective_thresholds(cfg, None)
    blessed, reasons, checks = blessing.decide(cfg, _binary_rows(), th, has_baseline=False)
    assert th is None and not blessed and not checks and "no thresholds" in reasons[0]


def test_nothing_judged_is_not_blessed(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    rows = [_row("golden", {"race": "Other"}, n=50, auc=0.99, fnr=0.1)]
    blessed, reasons, _ = blessing.decide(adult_cfg, rows, th, has_baseline=False)
    assert not blessed and "no threshold could be judged" in reasons[-1]


# --- multiclass ---

def test_multiclass_gates(multiclass_cfg):
    th = blessing.effective_thresholds(multiclass_cfg, None)
    good = [_row("eval", accuracy=0.86, macro_auc=0.8, base={"accuracy": 0.85, "macro_auc": 0.8}),
            _row("eval", {"sex": "Female"}, accuracy=0.85),
            _row("eval", {"sex": "Male"}, accuracy=0.88),
            _row("eval", {"age_bucket": "65+"}, n=120, accuracy=0.2)]
    blessed, reasons, checks = blessing.decide(multiclass_cfg, good, th, has_baseline=True)
    assert blessed, reasons
    assert {c["threshold"] for c in checks} == {"overall_accuracy_min", "slice_accuracy_min",
                                                "overall_macro_auc_min", "accuracy_max_drop",
                                                "fairness_max_gap"}
    bad = [_row("eval", accuracy=0.83, macro_auc=0.55, base={"accuracy": 0.85, "macro_auc": 0.8}),
           _row("eval", {"sex": "Female"}, accuracy=0.69),
           _row("eval", {"sex": "Male"}, accuracy=0.9)]
    blessed, reasons, _ = blessing.decide(multiclass_cfg, bad, th, has_baseline=True)
    text = "\n".join(reasons)
    assert not blessed
    for name in ("overall_macro_auc_min", "accuracy_max_drop", "slice_accuracy_min",
                 "fairness_max_gap"):
        assert name in text, text
    assert "overall_accuracy_min" not in text and "sex=Female" in text


def test_multiclass_fairness_skips_undefined_and_small_slices(multiclass_cfg):
    th = blessing.effective_thresholds(multiclass_cfg, None)
    rows = [_row("eval", accuracy=0.9, macro_auc=0.9),
            _row("eval", {"sex": "Female"}, accuracy=0.9),
            _row("eval", {"sex": "Male"}, n=20, accuracy=0.1)]
    _, _, checks = blessing.decide(multiclass_cfg, rows, th, has_baseline=False)
    fair = next(c for c in checks if c["threshold"] == "fairness_max_gap")
    assert fair["passed"] is None and "fewer than two" in fair["note"] and "sex=Male" in fair["note"]


# --- regression: ceilings (<=) ---

def test_regression_gates_are_ceilings_and_floors(regression_cfg):
    th = blessing.effective_thresholds(regression_cfg, None)
    rows = [_row("golden", rmse=11.0, r2=0.2, mae=8.0, base={"rmse": 10.8}),
            _row("golden", {"sex": "Female"}, rmse=10.0, mae=7.5),
            _row("golden", {"sex": "Male"}, rmse=12.0, mae=8.5)]
    blessed, reasons, checks = blessing.decide(regression_cfg, rows, th, has_baseline=True)
    assert blessed, reasons
    change = next(c for c in checks if c["threshold"] == "rmse_max_increase")
    assert change["op"] == "<=" and change["bound"] == 0.5 and change["value"] == pytest.approx(0.2)
    rows[0]["candidate"].update(rmse=12.5, r2=0.05)
    rows[2]["candidate"]["rmse"] = 15.0
    blessed, reasons, _ = blessing.decide(regression_cfg, rows, th, has_baseline=True)
    text = "\n".join(reasons)
    assert not blessed
    assert "rmse 12.5000 > 12.0000 (overall_rmse_max)" in text
    assert "r2 0.0500 < 0.1000 (overall_r2_min)" in text
    assert "rmse_max_increase" in text and "sex=Male" in text and "slice_rmse_max" in text


def test_regression_undefined_r2_is_not_gated(regression_cfg):
    th = blessing.effective_thresholds(regression_cfg, None)
    why = "the label is constant on this slice (40 for all 300 examples): R² needs a label variance"
    rows = [_row("eval", rmse=11.0, mae=8.0, undefined={"r2": why})]
    blessed, reasons, checks = blessing.decide(regression_cfg, rows, th, has_baseline=False)
    r2 = next(c for c in checks if c["threshold"] == "overall_r2_min")
    assert r2["passed"] is None and why in r2["note"]
    assert blessed, reasons


# --- fairness off by default, overrides ---

def test_fairness_is_off_unless_configured(adult_cfg):
    cfg = adult_cfg.model_copy(update={"evaluation": adult_cfg.evaluation.model_copy(
        update={"fairness": None})})
    th = blessing.effective_thresholds(cfg, None)
    assert "fairness_max_gap" not in th
    _, _, checks = blessing.decide(cfg, _binary_rows(fnr_f=0.9), th, has_baseline=False)
    assert not [c for c in checks if c["kind"] == "fairness"]
    assert task_config("regression", fairness=None).evaluation.fairness is None


@pytest.mark.parametrize("overrides, message", [
    ({"slice_auc_min": 0.5}, "outside its allowed range"),
    ({"auc_min": 0.9}, "not a threshold of task binary"),
    ({"overall_rmse_max": 10.0}, "it is a regression threshold"),
    ({"overall_accuracy_min": 0.9}, "it is a multiclass threshold"),
    ({"overall_auc_min": "0.9"}, "not a finite number"),
    ({"overall_auc_min": float("nan")}, "not a finite number"),
    ({"fairness_max_gap": 0.5}, "outside its allowed range"),
])
def test_overrides_outside_bounds_or_of_another_task_are_rejected(adult_cfg, overrides, message):
    with pytest.raises(UsageError, match=message):
        blessing.effective_thresholds(adult_cfg, overrides)


def test_a_binary_threshold_is_refused_for_a_regression_pipeline(regression_cfg):
    with pytest.raises(UsageError, match="slice_auc_min.*it is a binary threshold"):
        blessing.effective_thresholds(regression_cfg, {"slice_auc_min": 0.8})
    with pytest.raises(UsageError, match="may not be overridden"):
        blessing.effective_thresholds(regression_cfg, {"overall_r2_min": 0.3})


def test_override_within_bounds_applies(adult_cfg, multiclass_cfg):
    th = blessing.effective_thresholds(adult_cfg, {"slice_auc_min": 0.8, "fairness_max_gap": 0.1})
    assert th["slice_auc_min"] == 0.8 and th["overall_auc_min"] == 0.90
    assert th["fairness_max_gap"] == 0.1
    th = blessing.effective_thresholds(multiclass_cfg, {"slice_accuracy_min": 0.6})
    assert th == {"overall_accuracy_min": 0.8, "slice_accuracy_min": 0.6,
                  "overall_macro_auc_min": 0.6, "accuracy_max_drop": 0.01, "fairness_max_gap": 0.1}


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


def test_trigger_params_are_the_override_bounds_with_the_configured_values(multiclass_cfg):
    import datetime as dt

    from pipelines.params import param_schemas, resolve_params

    schemas = param_schemas(multiclass_cfg)
    assert {k for k in schemas if k.startswith("threshold_")} == {
        "threshold_slice_accuracy_min", "threshold_fairness_max_gap"}
    assert "(config: 0.7)" in schemas["threshold_slice_accuracy_min"]["description"]
    assert "(config: 0.1)" in schemas["threshold_fairness_max_gap"]["description"]
    assert schemas["threshold_fairness_max_gap"]["maximum"] == 0.3
    p = resolve_params(multiclass_cfg, {"threshold_fairness_max_gap": 0.2}, dt.date(2026, 11, 20))
    assert blessing.effective_thresholds(multiclass_cfg, p["threshold_overrides"])[
        "fairness_max_gap"] == 0.2


# --- gates on the 95% interval (evaluation.gate_on, interval_below_rows; issue 11) ---

def _with_intervals(rows, age_ci=(0.80, 0.87), change_ci=None):
    for r in rows:
        auc = r["candidate"].get("auc")
        if auc is not None:
            ci = list(age_ci) if r["name"] == "age_bucket=65+" else [auc - 0.01, auc + 0.01]
            r["intervals"] = {"candidate": {"auc": ci}}
        if change_ci is not None and not r["slice"]:
            r["intervals"]["candidate"]["auc_change"] = list(change_ci)
    return rows


def _gate_on(cfg, gate_on, below=None):
    ev = cfg.evaluation.model_copy(update={"gate_on": gate_on, "interval_below_rows": below})
    return cfg.model_copy(update={"evaluation": ev})


def test_optimistic_gate_fails_a_slice_only_when_its_whole_interval_is_below(adult_cfg):
    """age 65+ AUC 0.83 < 0.84 on the point, interval [0.80, 0.87]: noise, not a regression."""
    th = blessing.effective_thresholds(adult_cfg, None)
    rows = _with_intervals(_binary_rows(age_auc=0.83))
    assert not blessing.decide(adult_cfg, rows, th, False)[0]  # point (the default): fails
    cfg = _gate_on(adult_cfg, "optimistic")
    blessed, reasons, checks = blessing.decide(cfg, rows, th, False)
    assert blessed, reasons
    c = next(c for c in checks if c["slice"] == "age_bucket=65+")
    assert c["value"] == 0.83 and c["interval"] == [0.80, 0.87] and c["compared_value"] == 0.87
    assert c["compared"].startswith("upper end") and c["passed"] is True
    # a slice whose whole interval is below the floor still fails, and the reason says so
    rows = _with_intervals(_binary_rows(age_auc=0.78), age_ci=(0.74, 0.83))
    blessed, reasons, _ = blessing.decide(cfg, rows, th, False)
    assert not blessed and reasons == [
        "golden: slice age_bucket=65+: auc 0.7800 [0.7400, 0.8300]: upper end of the 95% "
        "interval (optimistic) 0.8300 < 0.8400 (slice_auc_min)"]


def test_pessimistic_gate_needs_the_whole_interval_above(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    rows = _with_intervals(_binary_rows(age_auc=0.86), age_ci=(0.82, 0.90))
    assert blessing.decide(adult_cfg, rows, th, False)[0]
    blessed, reasons, _ = blessing.decide(_gate_on(adult_cfg, "pessimistic"), rows, th, False)
    assert not blessed and "lower end of the 95% interval (pessimistic) 0.8200" in reasons[0]


def test_interval_below_rows_keeps_large_slices_on_the_point(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    rows = _with_intervals(_binary_rows(age_auc=0.83))  # the 65+ slice has 500 rows
    _, _, checks = blessing.decide(_gate_on(adult_cfg, "optimistic", below=400), rows, th, False)
    c = next(c for c in checks if c["slice"] == "age_bucket=65+")
    assert c["compared"] == "point" and c["passed"] is False
    _, _, checks = blessing.decide(_gate_on(adult_cfg, "optimistic", below=501), rows, th, False)
    c = next(c for c in checks if c["slice"] == "age_bucket=65+")
    assert c["compared"] != "point" and c["passed"] is True


def test_change_gate_compares_the_paired_interval_and_a_missing_interval_is_said(adult_cfg):
    th = blessing.effective_thresholds(adult_cfg, None)
    cfg = _gate_on(adult_cfg, "optimistic")
    # drop 0.01 > 0.005 on the point; the paired interval of the change [-0.02, 0.001] holds -0.005
    rows = _with_intervals(_binary_rows(base=0.94), change_ci=(-0.02, 0.001))
    assert not blessing.decide(adult_cfg, rows, th, True)[0]
    blessed, reasons, checks = blessing.decide(cfg, rows, th, True)
    assert blessed, reasons
    c = next(c for c in checks if c["threshold"] == "auc_max_drop")
    assert c["compared_value"] == 0.001 and c["interval"] == [-0.02, 0.001]
    rows = _with_intervals(_binary_rows(base=0.94))  # no change interval: the point, with a note
    blessed, _, checks = blessing.decide(cfg, rows, th, True)
    c = next(c for c in checks if c["threshold"] == "auc_max_drop")
    assert not blessed and c["compared"] == "point" and "no confidence interval" in c["note"]


def test_gate_on_is_validated_with_a_clear_error():
    from pipelines.config import ConfigError, parse_config
    from tests.eval.conftest import adult_raw

    raw = adult_raw()
    raw["sample_data"] = None
    raw["evaluation"]["gate_on"] = "upper"
    with pytest.raises(ConfigError, match="gate_on"):
        parse_config(raw)
    raw["evaluation"]["gate_on"] = "point"
    raw["evaluation"]["interval_below_rows"] = 500
    with pytest.raises(ConfigError, match="interval_below_rows: has no effect"):
        parse_config(raw)
    with pytest.raises(ConfigError, match="binary tasks only"):
        task_config("regression", gate_on="optimistic")
    assert task_config("binary", gate_on="optimistic", interval_below_rows=500).evaluation.gate_on \
        == "optimistic"


def test_monitor_judges_production_on_its_own_intervals(adult_cfg):
    """monitor.as_model puts the judged model's intervals (not the shadow's) in the candidate place."""
    from pipelines.monitor import as_model

    row = _row("live", {"age_bucket": "65+"}, n=500, auc=0.83, base={"auc": 0.78})
    row["intervals"] = {"candidate": {"auc": [0.80, 0.86]}, "baseline": {"auc": [0.74, 0.82]}}
    cfg = _gate_on(adult_cfg, "optimistic")
    th = blessing.effective_thresholds(cfg, None)
    prod = as_model([row], "baseline")
    assert prod[0]["intervals"] == {"candidate": {"auc": [0.74, 0.82]}}
    _, _, checks = blessing.decide(cfg, prod, th, has_baseline=False)
    assert checks[0]["compared_value"] == 0.82 and checks[0]["passed"] is False
