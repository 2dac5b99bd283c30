"""Unit tests of pipelines/drift.py: the distances, the shared bins and the per-feature limits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import drift


def test_js_distance_bounds_and_symmetry():
    p, q = np.array([10.0, 0, 0]), np.array([0.0, 0, 5])
    assert drift.js_distance(p, p) == 0.0
    assert drift.js_distance(p, q) == pytest.approx(1.0)  # disjoint supports, log base 2
    a, b = np.array([3.0, 1, 1]), np.array([1.0, 1, 3])
    assert drift.js_distance(a, b) == pytest.approx(drift.js_distance(b, a))
    assert drift.js_distance(a, 10 * a) == pytest.approx(0.0)  # counts are normalised
    with pytest.raises(ValueError, match="non-empty"):
        drift.js_distance(np.zeros(3), a)


def test_js_distance_matches_scipy():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    p, q = rng.random(20), rng.random(20)
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))


def test_bins_come_from_the_baseline_and_outer_bins_are_open():
    edges = drift.bin_edges(np.array([0, 10]), bins=5)
    assert edges[0] == -np.inf and edges[-1] == np.inf and list(edges[1:-1]) == [2, 4, 6, 8]
    counts = drift.histogram(np.array([-100, 0, 3, 9.9, 10, 1e9]), edges)
    assert list(counts) == [2, 1, 0, 0, 3]
    flat = drift.bin_edges(np.array([7, 7, 7]), bins=4)  # a constant baseline still gets bins
    assert drift.histogram(np.array([7, 7, 100]), flat).sum() == 3


def test_linf_is_the_largest_frequency_change_including_new_categories():
    a = pd.Series(["x"] * 50 + ["y"] * 50)
    b = pd.Series(["x"] * 50 + ["y"] * 20 + ["z"] * 30)
    value, category = drift.linf_distance(a, b)
    assert value == pytest.approx(0.3) and category in ("y", "z")
    assert drift.linf_distance(a, a.sample(frac=1, random_state=1))[0] == 0.0


def test_feature_drift_applies_per_feature_thresholds(adult_cfg):
    rng = np.random.default_rng(1)
    n = 2000

    def frame(age_shift: float, sex_female: float) -> pd.DataFrame:
        cols = {}
        for c in adult_cfg.columns:
            if c.type == "string":
                cols[c.name] = np.where(rng.random(n) < sex_female, "Female", "Male")
            else:
                cols[c.name] = rng.normal(100_000 if c.name == "fnlwgt" else 40, 5, n)
        cols["age"] = cols["age"] + age_shift
        return pd.DataFrame(cols)

    base = frame(0, 0.33)
    same = drift.feature_drift(adult_cfg, base, frame(0, 0.33))
    assert all(d["passed"] for d in same.values())
    assert same["fnlwgt"]["threshold"] == adult_cfg.validation.drift.per_feature["fnlwgt"]
    assert same["sex"]["metric"] == drift.LINF and same["age"]["metric"] == drift.JS

    shifted = drift.feature_drift(adult_cfg, base, frame(15, 0.6))
    assert not shifted["age"]["passed"] and shifted["age"]["value"] > 0.5
    assert shifted["age"]["current_mean"] - shifted["age"]["baseline_mean"] == pytest.approx(15, abs=1)
    assert not shifted["sex"]["passed"] and shifted["sex"]["value"] == pytest.approx(0.27, abs=0.05)
    assert "column age: distribution drifted" in drift.describe("age", shifted["age"])
    assert "'Female'" in drift.describe("sex", shifted["sex"]) or "'Male'" in drift.describe(
        "sex", shifted["sex"])


def test_feature_drift_needs_rows(adult_cfg):
    empty = pd.DataFrame({c: [] for c in adult_cfg.column_names})
    with pytest.raises(ValueError, match="rows in both"):
        drift.feature_drift(adult_cfg, empty, empty)


def test_stored_profile_gives_the_same_drift_as_the_rows(adult_cfg):
    import json

    rng = np.random.default_rng(2)
    n = 1000
    frame = pd.DataFrame({c.name: (rng.integers(17, 90, n) if c.type != "string"
                                   else rng.choice(["a", "b", "c"], n)) for c in adult_cfg.columns})
    other = frame.sample(frac=1, random_state=3).head(600).reset_index(drop=True)
    other["age"] = other["age"] + 30
    stored = json.loads(json.dumps(drift.profile(adult_cfg, frame)))  # as written to disk
    assert drift.compare(adult_cfg, stored, other) == drift.feature_drift(adult_cfg, frame, other)
    assert not drift.compare(adult_cfg, stored, other)["age"]["passed"]
    del stored["sex"]
    assert drift.compare(adult_cfg, stored, other)["sex"]["passed"] is False


def _chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i:i + size] for i in range(0, len(frame), size)]


def test_profile_and_drift_chunk_by_chunk_equal_the_whole_frame(adult_cfg):
    """Profiler and Comparer fed in chunks give what profile and compare give on all rows at
    once; a numeric column past max_distinct gets its histogram from a second pass."""
    rng = np.random.default_rng(4)
    n = 5000
    frame = pd.DataFrame({c.name: (rng.normal(40, 9, n).round(1) if c.type != "string"
                                   else rng.choice(["a", "b", "c", "d"], n, p=[.4, .3, .2, .1]))
                          for c in adult_cfg.columns})
    frame["age"] = rng.integers(17, 91, n)
    other = frame.sample(frac=0.7, random_state=5).reset_index(drop=True)
    other["age"] = other["age"] + 5
    whole = drift.profile(adult_cfg, frame)
    for cap in (drift.MAX_DISTINCT, 100):  # 100: age (74 values) fits, the others need a 2nd pass
        profiler = drift.Profiler(adult_cfg, max_distinct=cap)
        for c in _chunks(frame, 777):
            profiler.add(c)
        pending = profiler.pending()
        assert ("age" not in pending) and (bool(pending) == (cap == 100))
        for c in _chunks(frame, 1000):
            profiler.add_second(c, pending)
        chunked = profiler.profile()
        assert chunked.keys() == whole.keys()
        for name, p in whole.items():
            q = chunked[name]
            if p["kind"] == "numeric":
                assert q["edges"] == p["edges"] and q["counts"] == p["counts"]
                assert q["mean"] == pytest.approx(p["mean"], rel=1e-12)
            else:
                assert q == p
    comparer = drift.Comparer(adult_cfg, whole)
    for c in _chunks(other, 999):
        comparer.add(c)
    assert comparer.result() == drift.compare(adult_cfg, whole, other)
    assert not comparer.result()["age"]["passed"]


def test_a_nullable_int_column_with_missing_cells_is_profiled(adult_cfg):
    """Missing cells of a nullable int column (pandas Int64, NA) are left out, not a crash."""
    frame = pd.DataFrame({c.name: (pd.array([1, None, 3, 3] * 50, dtype="Int64")
                                   if c.type != "string" else ["x", "y", None, "x"] * 50)
                          for c in adult_cfg.columns})
    prof = drift.profile(adult_cfg, frame)
    assert sum(prof["age"]["counts"]) == 150 and prof["age"]["mean"] == pytest.approx(7 / 3)
    assert prof["sex"]["frequencies"] == {"x": pytest.approx(2 / 3), "y": pytest.approx(1 / 3)}
    result = drift.compare(adult_cfg, prof, frame)
    assert all(d["passed"] for d in result.values())
    assert result["sex"]["current_frequency"] == 0.5  # of all rows, missing ones included
