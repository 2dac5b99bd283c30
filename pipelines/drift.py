"""Drift between a snapshot and its baseline, feature by feature, the way TFDV measures it.

Called by pipelines/validate.py; pure numpy/pandas, so it is unit-tested without any pipeline.
Numeric features: Jensen-Shannon distance (base 2, so in [0, 1]) between histograms that share the
baseline's bin edges (equal width over the baseline's range, the two outer bins open-ended so values
outside that range still count). Categorical features: L-infinity distance, the largest absolute
difference between the two relative frequencies of any one category. A feature drifts when its
distance exceeds its threshold: ``cfg.validation.drift.per_feature[name]`` if set, else
``numeric_js_max`` or ``categorical_linf_max``. A snapshot's :func:`profile` (its histograms and
frequencies) is stored when it is validated, so a later snapshot is compared with the profile
instead of reading the baseline's rows again. :class:`Profiler` and :class:`Comparer` do the same
chunk by chunk, so a snapshot of any size is profiled and compared in memory that does not grow
with its rows.
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


MAX_DISTINCT = 1_000_000  # exact distinct values kept per numeric column while profiling


def numeric_values(values: pd.Series) -> np.ndarray:
    """A numeric column as float64, missing cells (NA, NaN) as NaN."""
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _merge_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate([v for v, _ in parts])
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, np.bincount(inverse, weights=np.concatenate([c for _, c in parts]),
                             minlength=len(uniq))


class Profiler:
    """The drift profile of a snapshot built chunk by chunk: :meth:`add` every chunk of rows,
    then :meth:`profile` (what :func:`profile` returns for all the rows in one frame).

    The bin edges of a numeric column come from its range, known only after the last row; so a
    numeric column keeps its distinct finite values with their counts (the histogram is drawn from
    them at the end, the same counts as from the rows). A column with more than ``max_distinct``
    distinct values drops them and keeps its range: :meth:`pending` names it, and a second pass
    of :meth:`add_second` over the same rows counts its histogram. Memory: the distinct values
    (at most ``max_distinct`` per column) and the categories, never the rows.
    """

    def __init__(self, cfg: PipelineConfig, max_distinct: int = MAX_DISTINCT):
        self.cfg, self.max_distinct, self.rows = cfg, max_distinct, 0
        self.bins = cfg.validation.drift.histogram_bins
        self.numeric = [c.name for c in cfg.columns if c.type != "string"]
        self.categorical = [c.name for c in cfg.columns if c.type == "string"]
        self.distinct: dict[str, tuple[np.ndarray, np.ndarray] | None] = {
            n: (np.empty(0), np.empty(0)) for n in self.numeric}
        self.range: dict[str, list[float]] = {n: [np.inf, -np.inf] for n in self.numeric}
        self.sums: dict[str, list[float]] = {n: [0.0, 0] for n in self.numeric}
        self.second: dict[str, np.ndarray] = {}
        self.counts: dict[str, pd.Series] = {n: pd.Series(dtype="int64") for n in self.categorical}

    def add(self, frame: pd.DataFrame) -> Profiler:
        self.rows += len(frame)
        for name in self.numeric:
            values = numeric_values(frame[name])
            present = values[~np.isnan(values)]
            self.sums[name][0] += float(present.sum())
            self.sums[name][1] += len(present)
            finite = present[np.isfinite(present)]
            if finite.size:
                self.range[name] = [min(self.range[name][0], float(finite.min())),
                                    max(self.range[name][1], float(finite.max()))]
            known = self.distinct[name]
            if known is not None:
                merged = _merge_counts([known, np.unique(finite, return_counts=True)])
                self.distinct[name] = merged if len(merged[0]) <= self.max_distinct else None
        for name in self.categorical:
            self.counts[name] = self.counts[name].add(frame[name].value_counts(), fill_value=0)
        return self

    def pending(self) -> list[str]:
        """Numeric columns whose histogram needs a second pass (:meth:`add_second`)."""
        return [n for n in self.numeric if self.distinct[n] is None and n not in self.second]

    def _edges(self, name: str) -> np.ndarray:
        lo, hi = self.range[name]
        if lo > hi:
            raise ValueError("the baseline has no finite values to draw histogram edges from")
        return bin_edges(np.array([lo, hi]), self.bins)

    def add_second(self, frame: pd.DataFrame, columns: list[str]) -> None:
        """Second pass, for ``columns`` of :meth:`pending`: counts their histograms."""
        for name in columns:
            counts = histogram(numeric_values(frame[name]), self._edges(name))
            self.second[name] = self.second.get(name, 0) + counts

    def profile(self) -> dict[str, dict[str, Any]]:
        if not self.rows:
            raise ValueError("cannot profile a snapshot without rows")
        if self.pending():
            raise ValueError(f"columns {self.pending()} need a second pass (add_second) first")
        out: dict[str, dict[str, Any]] = {}
        for col in self.cfg.columns:
            if col.type == "string":
                counts = self.counts[col.name]
                counts = counts[counts > 0].sort_values(ascending=False, kind="stable")
                total = counts.sum()
                out[col.name] = {"kind": "categorical", "frequencies": {
                    str(k): float(v) / float(total) for k, v in counts.items()}}
                continue
            edges = self._edges(col.name)
            known = self.distinct[col.name]
            if known is None:
                hist = self.second[col.name]
            else:
                index = np.searchsorted(edges[1:-1], known[0], side="right")
                hist = np.bincount(index, weights=known[1], minlength=self.bins).astype(float)
            total, n = self.sums[col.name]
            out[col.name] = {"kind": "numeric", "edges": edges[1:-1].tolist(),
                             "counts": hist.tolist(), "mean": total / n if n else float("nan")}
        return out


def profile(cfg: PipelineConfig, frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """What a later snapshot needs to be compared with this one, without reading its rows again.

    Numeric columns: the inner histogram edges drawn from this frame and the counts in them, and
    the mean; categorical columns: the relative frequency of each category. JSON-serialisable.
    (For rows read chunk by chunk, :class:`Profiler`.)
    """
    if frame.empty:
        raise ValueError("cannot profile a snapshot without rows")
    profiler = Profiler(cfg).add(frame)
    profiler.add_second(frame, profiler.pending())
    return profiler.profile()


class Comparer:
    """Drift against a baseline profile, chunk by chunk: :meth:`add` every chunk of the current
    snapshot's rows, then :meth:`result` (what :func:`compare` returns for all rows at once).
    Memory: one histogram per numeric column and the category counts."""

    def __init__(self, cfg: PipelineConfig, baseline: dict[str, dict[str, Any]]):
        self.cfg, self.baseline, self.rows = cfg, baseline, 0
        self.hist: dict[str, np.ndarray] = {}
        self.sums: dict[str, list[float]] = {}
        self.counts: dict[str, pd.Series] = {}
        for col in cfg.columns:
            base = baseline.get(col.name)
            if base is None or (base["kind"] == "numeric") != (col.type != "string"):
                continue
            if col.type == "string":
                self.counts[col.name] = pd.Series(dtype="int64")
            else:
                self.hist[col.name] = np.zeros(len(base["edges"]) + 1)
                self.sums[col.name] = [0.0, 0]

    def add(self, frame: pd.DataFrame) -> Comparer:
        self.rows += len(frame)
        for name in self.hist:
            edges = np.array([-np.inf, *self.baseline[name]["edges"], np.inf])
            values = numeric_values(frame[name])
            self.hist[name] += histogram(values, edges)
            present = values[~np.isnan(values)]
            self.sums[name][0] += float(present.sum())
            self.sums[name][1] += len(present)
        for name in self.counts:
            self.counts[name] = self.counts[name].add(frame[name].value_counts(), fill_value=0)
        return self

    def result(self) -> dict[str, dict[str, Any]]:
        """``{column: {metric, value, threshold, passed, ...}}``: see :func:`compare`."""
        if not self.rows:
            raise ValueError("drift needs rows in the current snapshot")
        out: dict[str, dict[str, Any]] = {}
        for col in self.cfg.columns:
            numeric = col.type != "string"
            limit = threshold(self.cfg, col.name, numeric)
            base = self.baseline.get(col.name)
            if col.name not in self.hist and col.name not in self.counts:
                out[col.name] = {"metric": JS if numeric else LINF, "value": 1.0,
                                 "threshold": limit, "passed": False,
                                 "note": "the baseline has no such column or type"}
                continue
            assert base is not None
            if numeric:
                value = js_distance(np.array(base["counts"]), self.hist[col.name])
                total, n = self.sums[col.name]
                extra = {"baseline_mean": round(base["mean"], 4),
                         "current_mean": round(total / n if n else float("nan"), 4)}
            else:
                counts = self.counts[col.name]
                counts = counts[counts > 0]
                current = {k: float(v) / float(counts.sum()) for k, v in counts.items()}
                value, category = linf_distance(base["frequencies"], current)
                extra = {"category": category,
                         "baseline_frequency": round(base["frequencies"].get(category, 0.0), 4),
                         "current_frequency": round(float(counts.get(category, 0)) / self.rows, 4)}
            out[col.name] = {"metric": JS if numeric else LINF, "value": round(value, 4),
                             "threshold": limit, "passed": bool(value <= limit), **extra}
        return out


def compare(cfg: PipelineConfig, baseline: dict[str, dict[str, Any]],
            current: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Drift of every configured column (label included) of ``current`` against a baseline profile.

    Returns:
        ``{column: {metric, value, threshold, passed, ...}}``; numeric entries add both means,
        categorical entries add the category whose frequency moved most and both frequencies.
        A column the baseline profile lacks is reported as drifted. (For rows read chunk by
        chunk, :class:`Comparer`.)
    """
    if current.empty:
        raise ValueError("drift needs rows in the current snapshot")
    return Comparer(cfg, baseline).add(current).result()


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
