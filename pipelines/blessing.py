"""The gates of the `evaluate` step: from TFMA's per-slice metrics to a blessing record.

Called by :mod:`pipelines.evaluate` (and unit tests). Pure Python: no TensorFlow, no TFMA.

The gates are the task's rows of :data:`pipelines.config.GATES` that the config sets under
``evaluation.thresholds`` (no threshold name is written here): an ``overall`` gate bounds the
metric on each dataset's whole set, a ``slice`` gate on every slice of ``min_slice_size`` rows or
more, a ``change`` gate bounds candidate minus production (a ``>=`` change gate is the largest
drop allowed, a ``<=`` one the largest increase). ``evaluation.fairness`` bounds the gap (max - min)
of its metric across the slices of its feature (gated slices only); off when not configured.

The blessing is a record, not a boolean: for every check it lists the metric, dataset, slice,
value, bound and whether it passed. A check that cannot be judged (a slice smaller than
``evaluation.min_slice_size``, a metric undefined on the slice, such as AUC on a slice of one
class, or no baseline yet) is kept with ``passed: None`` and a note saying why, and does not gate.
A pipeline with no thresholds configured is never blessed (TFX silently blesses that case), nor is
a candidate on which nothing could be judged.

``evaluation.gate_on`` decides which number a value or change check compares with its bound (issue
11, gates that do not flip on noise): the point value (``point``, the default), or an end of the
metric's 95% bootstrap interval that the evaluate step computes in the same pass (binary tasks:
``row["intervals"]``; the change check uses the paired interval of candidate minus production).
``optimistic`` takes the end best for the candidate (a floor's upper end), so a check fails only
when the whole interval violates the bound: a retrain on the same data that moves a slice by noise
no longer flips the gate. ``pessimistic`` takes the worst end (pass only when the whole interval
meets the bound). ``evaluation.interval_below_rows`` limits that to checks on fewer rows (small
slices); the others compare the point. Each check records ``interval``, ``compared`` (which number)
and ``compared_value``; a check without an interval compares its point value and says so. The
fairness gap is always the gap of point values.
"""

from __future__ import annotations

import math
from typing import Any

from pipelines.config import FAIRNESS_GATE, GATES, TASKS, PipelineConfig, gate_names
from pipelines.errors import UsageError


def effective_thresholds(cfg: PipelineConfig, overrides: dict[str, Any] | None) -> dict | None:
    """The configured thresholds (gate name -> bound, plus ``fairness_max_gap`` when fairness is
    configured) with trigger-time ``overrides`` applied; None when no gate is configured.

    Raises:
        UsageError: an override names a threshold of no gate of this task, one that
            ``override_bounds`` does not allow to change, is not a number, or is out of bounds.
    """
    ev = cfg.evaluation
    overrides = dict(overrides or {})
    values: dict[str, float] = dict(ev.thresholds)
    if ev.fairness is not None:
        values[FAIRNESS_GATE] = ev.fairness.max_gap
    allowed = gate_names(cfg.task)
    bounds = ev.override_bounds
    for name, value in overrides.items():
        if name not in allowed:
            other = [t for t in TASKS if name in gate_names(t)]
            hint = f" (it is a {other[0]} threshold)" if other else ""
            raise UsageError(f"threshold override {name!r} is not a threshold of task {cfg.task}"
                             f"{hint}; use one of {list(allowed)}")
        if name not in values:
            raise UsageError(f"threshold {name!r} is not configured for pipeline {cfg.name!r} "
                             "(evaluation.thresholds / evaluation.fairness): nothing to override")
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
    if not ev.thresholds:
        return None
    return values


POINT = "point"
_ENDS = {("optimistic", ">="): 1, ("optimistic", "<="): 0,
         ("pessimistic", ">="): 0, ("pessimistic", "<="): 1}


def compared(gate_on: str, op: str, value: float | None, interval: list[float] | None,
             rows: float, below_rows: int | None) -> tuple[str, float | None, str]:
    """(what is compared, its value, note) for a check: the point value, or the end of the 95%
    interval that ``gate_on`` names (for ``op``) when the check is on fewer than ``below_rows``
    rows (None: any). A check that should use the interval but has none compares the point."""
    if gate_on == POINT or value is None or (below_rows is not None and rows >= below_rows):
        return POINT, value, ""
    if interval is None:
        return POINT, value, "no confidence interval for this value: point value compared"
    end = _ENDS[(gate_on, op)]
    return (f"{'upper' if end else 'lower'} end of the 95% interval ({gate_on})", interval[end],
            "")


def _check(kind: str, threshold: str, dataset: str, slice_: str, metric: str, value, bound,
           op: str, gated: bool = True, note: str = "", interval: list[float] | None = None,
           rows: float = 0.0, rule: tuple[str, int | None] = (POINT, None)) -> dict[str, Any]:
    passed = None
    what, cmp_value, cmp_note = compared(rule[0], op, value, interval, rows, rule[1])
    if gated and cmp_value is not None:
        passed = cmp_value >= bound if op == ">=" else cmp_value <= bound
        note = "; ".join(n for n in (note, cmp_note) if n)
    elif gated and value is None:
        note = note or f"{metric} undefined on this slice: not gated"
    return {"kind": kind, "threshold": threshold, "dataset": dataset, "slice": slice_,
            "metric": metric, "value": value, "bound": bound, "op": op, "passed": passed,
            "note": note, "interval": interval, "compared": what, "compared_value": cmp_value}


def _reason(c: dict[str, Any]) -> str:
    where = "overall" if c["slice"] == "overall" else f"slice {c['slice']}"
    bad = "<" if c["op"] == ">=" else ">"
    value = f"{c['metric']} {c['value']:.4f}"
    if c.get("interval"):
        value += " [{:.4f}, {:.4f}]".format(*c["interval"])
    if c.get("compared", POINT) != POINT:
        value += f": {c['compared']} {c['compared_value']:.4f}"
    return f"{c['dataset']}: {where}: {value} {bad} {c['bound']:.4f} ({c['threshold']})"


def _interval(row: dict[str, Any], metric: str) -> list[float] | None:
    ci = (row.get("intervals") or {}).get("candidate", {}).get(metric)
    return [float(ci[0]), float(ci[1])] if ci else None


def _undefined(row: dict[str, Any], model: str, metric: str) -> str:
    why = (row.get("undefined") or {}).get(model, {}).get(metric)
    return f"{metric} undefined: {why}; not gated" if why else ""


def decide(cfg: PipelineConfig, rows: list[dict[str, Any]], thresholds: dict | None,
           has_baseline: bool) -> tuple[bool, list[str], list[dict[str, Any]]]:
    """Applies the thresholds to TFMA's rows; returns (blessed, reasons, checks)."""
    if thresholds is None:
        return False, [f"no thresholds configured for pipeline {cfg.name!r} "
                       "(evaluation.thresholds): a model is never blessed without gates"], []
    min_size = cfg.evaluation.min_slice_size
    rule = (cfg.evaluation.gate_on, cfg.evaluation.interval_below_rows)
    gates = [g for g in GATES[cfg.task] if thresholds.get(g.name) is not None]
    checks: list[dict[str, Any]] = []
    for row in rows:
        cand, base = row["candidate"], row.get("baseline") or {}
        count = cand.get("example_count") or 0
        overall = not row["slice"]
        for g in gates:
            bound = thresholds[g.name]
            value = cand.get(g.metric)
            if g.scope == "overall" and overall:
                checks.append(_check("value", g.name, row["dataset"], "overall", g.metric, value,
                                     bound, g.op, note=_undefined(row, "candidate", g.metric),
                                     interval=_interval(row, g.metric), rows=count, rule=rule))
            elif g.scope == "slice" and not overall:
                small = count < min_size
                note = (f"{count:.0f} examples < min_slice_size {min_size}: reported, not gated"
                        if small else _undefined(row, "candidate", g.metric))
                checks.append(_check("value", g.name, row["dataset"], row["name"], g.metric,
                                     value, bound, g.op, gated=not small, note=note,
                                     interval=_interval(row, g.metric), rows=count, rule=rule))
            elif g.scope == "change" and overall:
                # >=: the largest drop allowed (delta >= -bound); <=: the largest increase.
                limit = -bound if g.op == ">=" else bound
                metric = f"{g.metric} change vs production"
                if not has_baseline:
                    checks.append(_check("change", g.name, row["dataset"], "overall", metric, None,
                                         limit, g.op, gated=False,
                                         note="no production model yet: the first model must "
                                              "pass the absolute thresholds only"))
                    continue
                note = (_undefined(row, "candidate", g.metric)
                        or _undefined(row, "baseline", g.metric).replace(
                            "undefined:", "undefined for production:"))
                delta = (value - base[g.metric] if value is not None
                         and base.get(g.metric) is not None else None)
                checks.append(_check("change", g.name, row["dataset"], "overall", metric, delta,
                                     limit, g.op, note=note,
                                     interval=_interval(row, f"{g.metric}_change"), rows=count,
                                     rule=rule))
    checks += _fairness_checks(cfg, rows, thresholds.get(FAIRNESS_GATE))
    failed = [c for c in checks if c["passed"] is False]
    judged = [c for c in checks if c["passed"] is not None]
    reasons = [_reason(c) for c in failed]
    if not judged:
        reasons.append("no threshold could be judged on this evaluation: not blessed")
    return not failed and bool(judged), reasons, checks


def _fairness_checks(cfg: PipelineConfig, rows: list[dict[str, Any]],
                     max_gap: float | None) -> list[dict[str, Any]]:
    fair = cfg.evaluation.fairness
    if fair is None or max_gap is None:
        return []
    min_size = cfg.evaluation.min_slice_size
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["spec"] == [fair.feature]:
            by_dataset.setdefault(row["dataset"], []).append(row)
    checks = []
    metric = f"{fair.metric} gap across {fair.feature}"
    for dataset, slices in sorted(by_dataset.items()):
        usable, skipped = [], []
        for r in slices:
            count = r["candidate"].get("example_count") or 0
            value = r["candidate"].get(fair.metric)
            if count < min_size:
                skipped.append(f"{r['name']}: {count:.0f} examples < {min_size}")
            elif value is None:
                why = _undefined(r, "candidate", fair.metric) or f"{fair.metric} undefined"
                skipped.append(f"{r['name']}: {why}")
            else:
                usable.append((r["name"], value))
        gap = max(v for _, v in usable) - min(v for _, v in usable) if len(usable) > 1 else None
        names = " vs ".join(f"{n} ({v:.3f})" for n, v in usable)
        note = "; ".join(skipped)
        if gap is None:
            note = "fewer than two gated slices with a defined value" + (f" ({note})" if note else "")
        checks.append(_check("fairness", FAIRNESS_GATE, dataset, names or fair.feature, metric,
                             gap, max_gap, "<=", gated=gap is not None, note=note))
    if not by_dataset:
        checks.append(_check("fairness", FAIRNESS_GATE, "*", fair.feature, metric, None, max_gap,
                             "<=", gated=False,
                             note=f"no slice of {fair.feature!r} in the evaluation"))
    return checks
