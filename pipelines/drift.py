"""Drift between a snapshot and its baseline, feature by feature, the way TFDV measures it.

Called by pipelines/validate.py; pure numpy/pandas, so it is unit-tested without any pipeline.
Numeric features: Jensen-Shannon distance (base 2, so in [0, 1]) between histograms that share the
baseline's bin edges (equal width over the baseline's range, the two outer bins open-ended so values
outside that range still count). Categorical features: L-infinity distance, the largest absolute
difference between the two relative frequencies of any one category. A feature drifts when its
distance exceeds its threshold: ``cfg.validation.drift.per_feature[name]`` if set, else
``numeric_js_max`` or ``categorical_linf_max``. A snapshot's :func:`profile` (its histograms and
frequencies) is stored when it is validated, so a later snapshot is compared with the profile
instead of reading the baseline's rows again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import PipelineConfig

JS = "jensen_shannon"
LINF = "l_infinity"


def bin_edges(baseline: np.ndarray, bins: int) -> np.ndarray:
    """``bins + 1`` equal-width edges over the baseline's range; the outer two are infinite."""
    values = np.asarray(baseline, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("the baseline has no finite values to draw histogram edges from")
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` per bin (right-open bins, the last one closed by +inf)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    index = np.searchsorted(edges[1:-1], values, side="right")
    return np.bincount(index, minlength=len(edges) - 1).astype(float)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, log base 2) of two count vectors."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("Jensen-Shannon distance needs two non-empty histograms")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def linf_distance(baseline: pd.Series | dict[str, float],
                  current: pd.Series | dict[str, float]) -> tuple[float, Any]:
    """Largest difference in relative frequency of one category, and that category.

    Either side may be a Series of values or a mapping of category to relative frequency.
    """
    a = _frequencies(baseline)
    b = _frequencies(current)
    index = a.index.union(b.index)
    diff = (a.reindex(index, fill_value=0.0) - b.reindex(index, fill_value=0.0)).abs()
    diff = diff.sort_values(ascending=False, kind="stable")
    if diff.empty:
        return 0.0, None
    return float(diff.iloc[0]), diff.index[0]


def _frequencies(values: pd.Series | dict[str, float]) -> pd.Series:
    if isinstance(values, dict):
        return pd.Series(values, dtype=float)
    return values.value_counts(normalize=True)


def threshold(cfg: PipelineConfig, name: str, numeric: bool) -> float:
    d = cfg.validation.drift
    if name in d.per_feature:
        return d.per_feature[name]
    return d.numeric_js_max if numeric else d.categorical_linf_max


def profile(cfg: PipelineConfig, frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """What a later snapshot needs to be compared with this one, without reading its rows again.

    Numeric columns: the inner histogram edges drawn from this frame and the counts in them, and
    the mean; categorical columns: the relative frequency of each category. JSON-serialisable.
    """
    if frame.empty:
        raise ValueError("cannot profile a snapshot without rows")
    out: dict[str, dict[str, Any]] = {}
    for col in cfg.columns:
        values = frame[col.name]
        if col.type == "string":
            out[col.name] = {"kind": "categorical", "frequencies": {
                str(k): float(v) for k, v in values.value_counts(normalize=True).items()}}
        else:
            edges = bin_edges(values.to_numpy(), cfg.validation.drift.histogram_bins)
            out[col.name] = {"kind": "numeric", "edges": edges[1:-1].tolist(),
                             "counts": histogram(values.to_numpy(), edges).tolist(),
                             "mean": float(values.mean())}
    return out


def compare(cfg: PipelineConfig, baseline: dict[str, dict[str, Any]],
            current: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Drift of every configured column (label included) of ``current`` against a baseline profile.

    Returns:
        ``{column: {metric, value, threshold, passed, ...}}``; numeric entries add both means,
        categorical entries add the category whose frequency moved most and both frequencies.
        A column the baseline profile lacks is reported as drifted.
    """
    if current.empty:
        raise ValueError("drift needs rows in the current snapshot")
    out: dict[str, dict[str, Any]] = {}
    for col in cfg.columns:
        numeric = col.type != "string"
        limit = threshold(cfg, col.name, numeric)
        base = baseline.get(col.name)
        values = current[col.name]
        if base is None or (base["kind"] == "numeric") != numeric:
            out[col.name] = {"metric": JS if numeric else LINF, "value": 1.0, "threshold": limit,
                             "passed": False, "note": "the baseline has no such column or type"}
            continue
        if numeric:
            edges = np.array([-np.inf, *base["edges"], np.inf])
            value = js_distance(np.array(base["counts"]), histogram(values.to_numpy(), edges))
            extra = {"baseline_mean": round(base["mean"], 4),
                     "current_mean": round(float(values.mean()), 4)}
        else:
            value, category = linf_distance(base["frequencies"], values)
            extra = {"category": category,
                     "baseline_frequency": round(base["frequencies"].get(category, 0.0), 4),
                     "current_frequency": round(float((values == category).mean()), 4)}
        out[col.name] = {"metric": JS if numeric else LINF, "value": round(value, 4),
                         "threshold": limit, "passed": bool(value <= limit), **extra}
    return out


def feature_drift(cfg: PipelineConfig, baseline: pd.DataFrame,
                  current: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Drift of ``current`` against a baseline given as rows (see :func:`compare`)."""
    if baseline.empty or current.empty:
        raise ValueError("drift needs rows in both the baseline and the current snapshot")
    return compare(cfg, profile(cfg, baseline), current)


def describe(name: str, d: dict[str, Any]) -> str:
    """One line for a data engineer about a drifted feature."""
    if d["metric"] == JS:
        return (f"column {name}: distribution drifted from the baseline (Jensen-Shannon distance "
                f"{d['value']:.3f} > limit {d['threshold']}; mean {d['baseline_mean']:.4g} -> "
                f"{d['current_mean']:.4g})")
    return (f"column {name}: category frequencies drifted from the baseline (L-infinity distance "
            f"{d['value']:.3f} > limit {d['threshold']}; {d['category']!r} "
            f"{d['baseline_frequency']:.1%} -> {d['current_frequency']:.1%})")
