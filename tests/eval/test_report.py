"""The audit page per task type, rendered in headless Chromium from built evaluation records.

What a reader sees first: the decision and its reasons, the headline metrics of candidate against
production, the worst slices and the fairness gaps, all before the full tables; an undefined
metric reads "undefined" with its reason, never 0.0000; values from data and config are escaped.
No TensorFlow: the records have the shape pipelines.evaluate writes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pipelines import blessing, report
from tests.eval.conftest import task_config

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian chromium missing: run "
                                           "scripts/install-system-deps.sh")


def dump_dom(html_path: Path, tmp_path: Path) -> str:
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chrome'}",
                           "--dump-dom", html_path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(html_path: Path, tmp_path: Path) -> Path:
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chrome'}",
                    "--window-size=1280,2000", f"--screenshot={shot}", html_path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return shot


def _row(dataset, slice_=None, cand=None, base=None, undefined=None):
    slice_ = slice_ or {}
    row = {"dataset": dataset, "spec": sorted(slice_), "slice": slice_,
           "name": ", ".join(f"{k}={v}" for k, v in slice_.items()) or "overall",
           "candidate": dict(cand or {}), "undefined": {}}
    if base is not None:
        row["baseline"] = dict(base)
    for model, why in (undefined or {}).items():
        row["undefined"][model] = why
        for m in why:
            row[model][m] = None
    return row


UNDEF_AUC = "the slice holds one class only (0 positive, 250 negative): ROC AUC needs both"


def _binary_rows():
    m = {"example_count": 5000.0, "auc": 0.9123, "auc_pr": 0.71, "accuracy": 0.85,
         "precision": 0.7, "recall": 0.6, "f1": 0.65, "fpr": 0.07, "fnr": 0.4,
         "positive_rate": 0.2, "calibration": 1.01, "mean_label": 0.24, "mean_prediction": 0.25,
         "log_loss": 0.31}
    return [
        _row("golden", cand=m, base={**m, "auc": 0.9301}),
        _row("golden", {"sex": "Female"}, cand={**m, "example_count": 1800.0, "auc": 0.93,
                                                "fnr": 0.55}, base=m),
        _row("golden", {"sex": "Male"}, cand={**m, "example_count": 3200.0, "fnr": 0.3}, base=m),
        _row("golden", {"race": "<script>alert(1)</script>"},
             cand={**m, "example_count": 250.0, "mean_label": 0.0, "recall": None},
             base={**m, "example_count": 250.0, "mean_label": 0.0},
             undefined={"candidate": {"auc": UNDEF_AUC, "recall": "no positive example"},
                        "baseline": {"auc": UNDEF_AUC}}),
        _row("golden", {"age_bucket": "65+"}, cand={**m, "example_count": 400.0, "auc": 0.8111},
             base=m),
    ]


def _multiclass_rows(classes):
    def per_class(v):
        out = {}
        for c in classes:
            out.update({f"precision[{c}]": v, f"recall[{c}]": v - 0.1, f"auc[{c}]": v + 0.05})
        return out
    m = {"example_count": 3000.0, "accuracy": 0.8432, "macro_auc": 0.9012, "macro_recall": 0.61,
         "log_loss": 0.52, **per_class(0.8)}
    why = {"macro_auc": "the slice holds one class only (White): one-vs-rest AUC needs two",
           **{f"auc[{c}]": f"no example of class {c} on this slice" for c in classes[1:]}}
    return [_row("eval", cand=m, base={**m, "accuracy": 0.85}),
            _row("eval", {"sex": "Female"}, cand={**m, "example_count": 1000.0, "accuracy": 0.80},
                 base=m),
            _row("eval", {"sex": "Male"}, cand={**m, "example_count": 2000.0, "accuracy": 0.86},
                 base=m),
            _row("eval", {"age_bucket": "<25"}, cand={**m, "example_count": 300.0},
                 base=m, undefined={"candidate": why, "baseline": why})]


def _regression_rows():
    m = {"example_count": 4000.0, "mae": 7.9, "rmse": 11.234, "r2": 0.2211, "mean_label": 40.4,
         "mean_prediction": 40.1, "mean_residual": 0.3}
    why = {"r2": "the label is constant on this slice (40 for all 300 examples): R² needs a "
                 "label variance"}
    return [_row("golden", cand=m),
            _row("golden", {"sex": "Female"}, cand={**m, "example_count": 1300.0, "rmse": 10.5,
                                                    "mae": 7.1}),
            _row("golden", {"sex": "Male"}, cand={**m, "example_count": 2700.0, "rmse": 11.6,
                                                  "mae": 8.4}),
            _row("golden", {"hours_bucket": "40"}, cand={**m, "example_count": 300.0, "rmse": 9.0},
                 undefined={"candidate": why})]


def _curves(task, classes=None, with_baseline=True):
    models = ["candidate", "baseline"] if with_baseline else ["candidate"]
    if task == "binary":
        c = {"roc": [[0, 0], [0.1, 0.6], [0.3, 0.85], [1, 1]],
             "calibration": [{"low": 0.0, "high": 0.5, "count": 10, "mean_label": 0.1,
                              "mean_prediction": 0.12},
                             {"low": 0.5, "high": 1.0, "count": 5, "mean_label": 0.8,
                              "mean_prediction": 0.75}],
             "confusion_matrices": [{"threshold": 0.5, "tp": 600, "fp": 250, "tn": 3550,
                                     "fn": 600}]}
    elif task == "multiclass":
        k = len(classes)
        c = {"confusion_matrix": {"classes": classes,
                                  "matrix": [[100.0 if i == j else 3.0 for j in range(k)]
                                             for i in range(k)]}}
    else:
        c = {"calibration": [{"low": 10.0, "high": 30.0, "count": 900, "mean_label": 28.0,
                              "mean_prediction": 25.0},
                             {"low": 30.0, "high": 45.0, "count": 2500, "mean_label": 40.5,
                              "mean_prediction": 40.0}],
             "residuals": [{"low": -20.0, "high": -1.0, "count": 1200},
                           {"low": -1.0, "high": 1.0, "count": 1500},
                           {"low": 1.0, "high": 30.0, "count": 1300}]}
    return {"golden" if task != "multiclass" else "eval": {m: c for m in models}}


def _record(cfg, rows, has_baseline, curves, **extra):
    thresholds = blessing.effective_thresholds(cfg, None)
    blessed, reasons, checks = blessing.decide(cfg, rows, thresholds, has_baseline)
    record = {
        "evaluation_id": "20261120T000000-abcd", "pipeline": cfg.name, "created_at": "2026-11-20",
        "run_id": "test", "task": cfg.task, "label": cfg.label.model_dump(mode="json"),
        "model": {"uri": "/m/1", "sha256": "a" * 64},
        "baseline": {"version": 1, "uri": "/r/1"} if has_baseline else None,
        "data": {"eval": [{"snapshot_id": "s1", "sha256": "b" * 64}], "golden": None},
        "decision_threshold": 0.5, "min_slice_size": cfg.evaluation.min_slice_size,
        "thresholds": thresholds, "threshold_overrides": {},
        "gates": [vars(g) for g in cfg.gates],
        "fairness": cfg.evaluation.fairness.model_dump() if cfg.evaluation.fairness else None,
        "blessed": blessed, "reasons": reasons, "checks": checks, "rows": rows, "curves": curves,
    }
    record.update(extra)
    return record


def _render(tmp_path, record, promotion=None) -> tuple[str, Path]:
    page = tmp_path / "report.html"
    page.write_text(report.render(record, promotion), encoding="utf-8")
    return dump_dom(page, tmp_path), page


def _before_tables(dom: str, *needles: str) -> str:
    """The part of the page before the full tables, asserting each needle is in it."""
    answer = dom.split('id="details"', 1)[0]
    for needle in needles:
        assert needle in answer, needle
    return answer


def _no_zero_for_undefined(dom: str):
    # every undefined metric reads "undefined" (reason on hover and in a footnote), never 0.0000
    # (no metric of these records is really 0; a delta may read +0.0000)
    assert not re.search(r">0\.0000<", dom)
    assert 'id="undefined-notes"' in dom


@needs_chromium
def test_binary_report_leads_with_refusal_headline_worst_slices_and_fairness(adult_cfg, tmp_path):
    record = _record(adult_cfg, _binary_rows(), True, _curves("binary"))
    assert not record["blessed"]
    dom, page = _render(tmp_path, record, promotion={"promoted": False,
                                                     "reasons": record["reasons"]})
    decision = dom.split('id="decision"', 1)[1].split("</h1>", 1)[0]
    assert "NOT PROMOTED" in decision
    answer = _before_tables(dom, 'id="reasons"', 'id="headline"', 'id="worst"', 'id="fairness"')
    reasons = answer.split('id="reasons"', 1)[1].split("</ul>", 1)[0]
    assert "auc_max_drop" in reasons and "age_bucket=65+" in reasons
    assert "fairness_max_gap" in reasons and "sex=Female" in reasons
    headline = answer.split('id="headline"', 1)[1].split("</table>", 1)[0]
    assert "0.9123" in headline and "0.9301" in headline and "-0.0178" in headline
    worst = answer.split('id="worst"', 1)[1].split("</table>", 1)[0]
    assert worst.index("age_bucket=65+") < worst.index("sex=Male")
    assert "0.8111" in worst
    fairness = answer.split('id="fairness"', 1)[1].split("</table>", 1)[0]
    assert "0.250" in fairness and "FAIL" in fairness
    # undefined AUC of the one-class slice: shown as undefined with the reason, never gated
    assert "undefined" in dom and UNDEF_AUC in dom
    check = next(c for c in record["checks"] if c["slice"].startswith("race="))
    assert check["passed"] is None and UNDEF_AUC in check["note"]
    _no_zero_for_undefined(dom)
    # values from the data are escaped: the slice value is text, not a script element
    assert "<script>alert(1)</script>" not in dom and "&lt;script&gt;alert(1)" in dom
    for table in ('id="checks"', 'id="slices"', 'id="confusion"'):
        assert table in dom.split('id="details"', 1)[1]
    assert dom.count("data:image/png;base64,") >= 2
    assert screenshot(page, tmp_path).stat().st_size > 20_000


@needs_chromium
def test_binary_report_blessed_but_refused_at_promotion(adult_cfg, tmp_path):
    rows = [r for r in _binary_rows() if r["name"] not in ("age_bucket=65+",)]
    for r in rows:
        r["candidate"]["fnr"] = 0.3
        if "baseline" in r:
            r["baseline"]["auc"] = r["candidate"]["auc"]
    record = _record(adult_cfg, rows, True, _curves("binary"))
    assert record["blessed"], record["reasons"]
    dom, _ = _render(tmp_path, record, promotion={"promoted": False,
                                                  "reasons": ["infra check failed: timeout"]})
    decision = dom.split('id="decision"', 1)[1].split("</h1>", 1)[0]
    assert "BLESSED BUT REFUSED" in decision
    assert "infra check failed" in _before_tables(dom, 'id="headline"')


@needs_chromium
def test_multiclass_report(multiclass_cfg, tmp_path):
    classes = [str(c) for c in multiclass_cfg.label.classes]
    record = _record(multiclass_cfg, _multiclass_rows(classes), True,
                     _curves("multiclass", classes))
    dom, page = _render(tmp_path, record, promotion={"promoted": True, "version": 3})
    assert "PROMOTED as version 3" in dom.split('id="decision"', 1)[1].split("</h1>", 1)[0]
    answer = _before_tables(dom, 'id="headline"', 'id="worst"', 'id="fairness"')
    headline = answer.split('id="headline"', 1)[1].split("</table>", 1)[0]
    assert "accuracy" in headline and "0.8432" in headline and "0.8500" in headline
    assert "macro_auc" in headline and "0.9012" in headline
    worst = answer.split('id="worst"', 1)[1].split("</table>", 1)[0]
    assert worst.index("sex=Female") < worst.index("sex=Male")
    details = dom.split('id="details"', 1)[1]
    classes_table = details.split('id="classes"', 1)[1].split("</table>", 1)[0]
    for c in classes:
        assert f">{c}<" in classes_table
    assert 'id="confusion-eval-candidate"' in details and 'id="confusion-eval-baseline"' in details
    slices = details.split('id="slices"', 1)[1].split("</table>", 1)[0]
    assert "age_bucket=&lt;25" in slices and "undefined" in slices
    assert "one class only (White)" in dom
    _no_zero_for_undefined(dom)
    assert dom.count("data:image/png;base64,") >= 3  # two confusion matrices + accuracy per slice
    assert screenshot(page, tmp_path).stat().st_size > 20_000


@needs_chromium
def test_regression_report_first_model_not_blessed(regression_cfg, tmp_path):
    rows = _regression_rows()
    rows[0]["candidate"]["rmse"] = 12.5  # above overall_rmse_max 12.0
    record = _record(regression_cfg, rows, False, _curves("regression", with_baseline=False))
    dom, page = _render(tmp_path, record)  # not blessed: promotion never ran
    decision = dom.split('id="decision"', 1)[1].split("</h1>", 1)[0]
    assert "NOT PROMOTED" in decision and "not blessed" in decision
    answer = _before_tables(dom, 'id="reasons"', 'id="headline"', 'id="worst"', 'id="fairness"')
    assert "rmse 12.5000 &gt; 12.0000 (overall_rmse_max)" in answer
    headline = answer.split('id="headline"', 1)[1].split("</table>", 1)[0]
    for needle in ("rmse", "12.5000", "mae", "7.9000", "r2", "0.2211", "none"):
        assert needle in headline, needle
    worst = answer.split('id="worst"', 1)[1].split("</table>", 1)[0]
    assert worst.index("sex=Male") < worst.index("sex=Female")  # higher RMSE is worse
    assert "R² needs a label variance" in dom
    _no_zero_for_undefined(dom)
    assert dom.count("data:image/png;base64,") >= 2  # residual plots + RMSE per slice
    assert screenshot(page, tmp_path).stat().st_size > 20_000


def test_fairness_off_is_said_and_config_values_are_escaped(tmp_path):
    cfg = task_config("regression", fairness=None)
    record = _record(cfg, _regression_rows(), False, _curves("regression", with_baseline=False),
                     pipeline="<b>x</b>")
    page = report.render(record)
    assert "fairness gate off" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
