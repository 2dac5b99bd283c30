"""The gates of the `evaluate` step: from TFMA's per-slice metrics to a blessing record.

Called by :mod:`pipelines.evaluate` (and unit tests). Pure Python: no TensorFlow, no TFMA.

The blessing is a record, not a boolean: for every threshold it lists the metric, dataset, slice,
value, bound and whether it passed. A check that cannot be judged (a slice smaller than
``evaluation.min_slice_size``, an AUC undefined because a slice holds one class, no baseline yet)
is kept in the record with ``passed: None`` and a note, and does not gate. A pipeline with no
thresholds configured is never blessed (TFX silently blesses that case).
"""

from __future__ import annotations

import math
from typing import Any

from pipelines.common import UsageError
from pipelines.config import PipelineConfig

NUMERIC = ("overall_auc_min", "slice_auc_min", "auc_max_drop", "fnr_gap_max")


def effective_thresholds(cfg: PipelineConfig, overrides: dict[str, Any] | None) -> dict | None:
    """The configured thresholds with trigger-time ``overrides`` applied, or None if none are set.

    Raises:
        UsageError: an override names an unknown threshold, one that ``override_bounds`` does not
            allow to change, is not a number, or lies outside its bounds.
    """
    base = cfg.evaluation.thresholds
    overrides = dict(overrides or {})
    if base is None:
        if overrides:
            raise UsageError(f"threshold overrides {sorted(overrides)} given, but pipeline "
                             f"{cfg.name!r} configures no thresholds (evaluation.thresholds)")
        return None
    values = base.model_dump()
    bounds = cfg.evaluation.override_bounds
    for name, value in overrides.items():
        if name not in NUMERIC:
            raise UsageError(f"threshold override {name!r} is not a threshold; use one of {NUMERIC}")
        if name not in bounds:
            raise UsageError(f"threshold {name!r} may not be overridden at trigger time: "
                             f"evaluation.override_bounds allows only {sorted(bounds)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UsageError(f"threshold override {name}={value!r} is not a finite number")
        low, high = bounds[name]
        if not low <= value <= high:
            raise UsageError(f"threshold override {name}={value} is outside its allowed range "
                             f"[{low}, {high}] (evaluation.override_bounds.{name})")
        values[name] = float(value)
    if all(values[n] is None for n in NUMERIC):
        return None
    return values


def _check(kind: str, threshold: str, dataset: str, slice_: str, metric: str, value, bound,
           op: str, gated: bool = True, note: str = "") -> dict[str, Any]:
    passed = None
    if gated and value is not None:
        passed = value >= bound if op == ">=" else value <= bound
    elif gated and value is None:
        note = note or f"{metric} undefined on this slice (a single class?): not gated"
    return {"kind": kind, "threshold": threshold, "dataset": dataset, "slice": slice_,
            "metric": metric, "value": value, "bound": bound, "op": op, "passed": passed,
            "note": note}


def _reason(c: dict[str, Any]) -> str:
    where = "overall" if c["slice"] == "overall" else f"slice {c['slice']}"
    bad = "<" if c["op"] == ">=" else ">"
    return (f"{c['dataset']}: {where}: {c['metric']} {c['value']:.4f} {bad} {c['bound']:.4f} "
            f"({c['threshold']})")


def decide(cfg: PipelineConfig, rows: list[dict[str, Any]], thresholds: dict | None,
           has_baseline: bool) -> tuple[bool, list[str], list[dict[str, Any]]]:
    """Applies the thresholds to TFMA's rows; returns (blessed, reasons, checks)."""
    if thresholds is None:
        return False, [f"no thresholds configured for pipeline {cfg.name!r} "
                       "(evaluation.thresholds): a model is never blessed without gates"], []
    min_size = cfg.evaluation.min_slice_size
    checks: list[dict[str, Any]] = []
    fair = thresholds.get("fairness_feature")
    fnr_by_dataset: dict[str, list[tuple[str, float | None, bool]]] = {}
    for row in rows:
        cand, base = row["candidate"], row.get("baseline") or {}
        count = cand.get("example_count") or 0
        overall = not row["slice"]
        if overall and thresholds["overall_auc_min"] is not None:
            checks.append(_check("value", "overall_auc_min", row["dataset"], "overall", "auc",
                                 cand.get("auc"), thresholds["overall_auc_min"], ">="))
        if not overall and thresholds["slice_auc_min"] is not None:
            small = count < min_size
            checks.append(_check("value", "slice_auc_min", row["dataset"], row["name"], "auc",
                                 cand.get("auc"), thresholds["slice_auc_min"], ">=",
                                 gated=not small,
                                 note=f"{count:.0f} examples < min_slice_size {min_size}: "
                                      "reported, not gated" if small else ""))
        if overall and thresholds["auc_max_drop"] is not None:
            if has_baseline and cand.get("auc") is not None and base.get("auc") is not None:
                delta = cand["auc"] - base["auc"]
                checks.append(_check("change", "auc_max_drop", row["dataset"], "overall",
                                     "auc change vs production", delta,
                                     -thresholds["auc_max_drop"], ">="))
            else:
                checks.append(_check("change", "auc_max_drop", row["dataset"], "overall",
                                     "auc change vs production", None,
                                     -thresholds["auc_max_drop"], ">=", gated=False,
                                     note="no production model yet: the first model must pass "
                                          "the absolute thresholds only"))
        if fair and row["spec"] == [fair]:
            fnr_by_dataset.setdefault(row["dataset"], []).append(
                (row["name"], cand.get("fnr"), count >= min_size))
    if fair and thresholds["fnr_gap_max"] is not None:
        if [fair] not in cfg.evaluation.slices:
            checks.append(_check("fairness", "fnr_gap_max", "*", fair, "fnr gap", None,
                                 thresholds["fnr_gap_max"], "<=", gated=False,
                                 note=f"fairness feature {fair!r} is not a slicing spec in "
                                      "evaluation.slices: add [" + fair + "]"))
        for dataset, slices in sorted(fnr_by_dataset.items()):
            usable = [(n, v) for n, v, big in slices if big and v is not None]
            gap = max(v for _, v in usable) - min(v for _, v in usable) if len(usable) > 1 else None
            names = " vs ".join(f"{n} ({v:.3f})" for n, v in usable)
            checks.append(_check("fairness", "fnr_gap_max", dataset, names or fair,
                                 f"fnr gap across {fair}", gap, thresholds["fnr_gap_max"], "<=",
                                 gated=gap is not None,
                                 note="" if gap is not None else "fewer than two gated slices"))
    failed = [c for c in checks if c["passed"] is False]
    judged = [c for c in checks if c["passed"] is not None]
    reasons = [_reason(c) for c in failed]
    if not judged:
        reasons.append("no threshold could be judged on this evaluation: not blessed")
    return not failed and bool(judged), reasons, checks
