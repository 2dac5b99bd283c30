"""The bootstrap confidence intervals of the fused binary combiner (pipelines.tfma_metrics).

Fast: the combiner class runs directly on in-memory examples (TFMA's StandardMetricInputs shape,
no Beam); the Beam/TFMA path and the comparison with TFMA's values are in test_fused_metrics.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines import tfma_metrics as tm

KEY = "__example_key"
MODELS = ["candidate", "baseline"]


def _combiner(samples: int = 100, threshold: float = 0.5) -> tuple[tm._BinaryCombiner, dict]:
    from tensorflow_model_analysis.metrics import metric_types

    names = [*tm._BINARY_METRICS, *(f"{k}_ci" for k in tm.CI_METRICS)]
    keys = {m: {k: metric_types.MetricKey(name=k, model_name=m) for k in names} for m in MODELS}
    keys["candidate"]["auc_change_ci"] = metric_types.MetricKey(name="auc_change_ci",
                                                                model_name="candidate")
    for m in MODELS:
        keys[m].update({k: metric_types.PlotKey(name=k, model_name=m) for k in tm._BINARY_PLOTS})
    comb = tm._BinaryCombiner(keys, None, MODELS, "", threshold, tm.AUC_BINS, 10, 1000,
                              bootstrap_key=KEY, bootstrap_samples=samples, baseline="baseline")
    # the plots (protos of 1,000 matrices) are not under test here; skipping them keeps this fast
    comb._confusion_plot = comb._calibration_plot = lambda *a: None  # type: ignore[method-assign]
    return comb, keys


def _element(key: int, y: float, pa: float, pb: float) -> dict:
    return {"labels": {"candidate": np.array([y]), "baseline": np.array([y])},
            "predictions": {"candidate": np.array([pa]), "baseline": np.array([pb])},
            "features": {KEY: np.array([key])}}


def _binormal(n: int, d: float, rng, prevalence: float = 0.3):
    """Labels and two correlated scores: positives shifted by d (true AUC Phi(d / sqrt 2))."""
    y = (rng.random(n) < prevalence).astype(float)
    common = rng.normal(size=n)
    za = d * y + common
    zb = 0.9 * d * y + 0.8 * common + 0.6 * rng.normal(size=n)
    return y, 1 / (1 + np.exp(-za + 1)), 1 / (1 + np.exp(-zb + 1))


def _run(y, pa, pb, keys=None, samples: int = 100, chunks: int = 1) -> dict:
    comb, k = _combiner(samples)
    keys = np.arange(len(y)) * 7919 + 11 if keys is None else keys
    accs = []
    for part in np.array_split(np.arange(len(y)), chunks):
        acc = comb.create_accumulator()
        for i in part:
            acc = comb.add_input(acc, _element(int(keys[i]), y[i], pa[i], pb[i]))
        accs.append(comb.compact(acc))
    out = comb.extract_output(comb.merge_accumulators(accs))
    return {m: {name: out[key] for name, key in k[m].items()} for m in MODELS}


def test_poisson_weights_are_poisson_one_and_a_function_of_the_key_only():
    keys = np.arange(20_000, dtype=np.int64) * 104729 - 5
    w = tm.poisson_weights(keys, 100)
    assert w.shape == (20_000, 100)
    assert w.mean() == pytest.approx(1.0, abs=0.01)
    assert w.var() == pytest.approx(1.0, abs=0.02)
    assert (w == 0).mean() == pytest.approx(math.exp(-1), abs=0.005)
    # the same key gets the same weights in any batch, order or position
    again = tm.poisson_weights(keys[::-1][:50], 100)
    assert np.array_equal(again, w[::-1][:50])
    # replicates are not copies of each other, nor are neighbouring keys
    assert abs(np.corrcoef(w[:, 0], w[:, 1])[0, 1]) < 0.03
    assert abs(np.corrcoef(w[:-1, 0], w[1:, 0])[0, 1]) < 0.03
    # negative int64 keys (half of all BLAKE2b keys) are fine
    assert tm.poisson_weights(np.array([-1, -(2 ** 63)]), 10).shape == (2, 10)


def test_histogram_auc_equals_the_rank_auc_up_to_ties_within_a_bucket():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y, pa, _ = _binormal(3000, 1.2, rng)
    b = tm.boot_bucket(pa)
    assert np.all(np.diff(b[np.argsort(pa)]) >= 0)  # monotone in the score
    pos = np.bincount(b, weights=y, minlength=tm.BOOT_BUCKETS)
    neg = np.bincount(b, minlength=tm.BOOT_BUCKETS) - pos
    assert tm.auc_from_histograms(pos, neg) == pytest.approx(roc_auc_score(y, pa), abs=2e-3)
    assert math.isnan(tm.auc_from_histograms(pos, np.zeros_like(neg)))


def test_intervals_cover_the_true_auc_and_shrink_with_rows():
    """Coverage of the 95% AUC interval over 60 seeded samples of a known binormal score (true
    AUC Phi(d / sqrt 2)), and width ~ 1 / sqrt(rows)."""
    from scipy.stats import norm

    d = 1.0
    truth = norm.cdf(d / math.sqrt(2))
    rng = np.random.default_rng(7)
    covered, widths = 0, []
    for _ in range(60):
        y, pa, pb = _binormal(400, d, rng)
        out = _run(y, pa, pb, keys=rng.integers(-2 ** 62, 2 ** 62, size=400))
        lo, hi = out["candidate"]["auc_ci"]
        assert lo <= out["candidate"]["auc"] <= hi
        covered += lo <= truth <= hi
        widths.append(hi - lo)
    assert covered >= 52, covered  # 95% nominal: at least 87% of 60 (binomial p ~ 0.003)
    y, pa, pb = _binormal(6400, d, rng)
    big = _run(y, pa, pb)["candidate"]["auc_ci"]
    # 16x the rows: about a quarter of the width
    assert 0.15 < (big[1] - big[0]) / np.median(widths) < 0.4


def test_threshold_metric_intervals_cover_the_point_and_change_interval_is_paired():
    rng = np.random.default_rng(3)
    y, pa, pb = _binormal(3000, 1.2, rng)
    out = _run(y, pa, pb)
    c, b = out["candidate"], out["baseline"]
    for name in ("binary_accuracy", "precision", "recall", "fpr", "fnr", "f1_score",
                 "predicted_positive_rate"):
        lo, hi = c[f"{name}_ci"]
        assert lo <= c[name] <= hi and hi - lo < 0.1, (name, lo, c[name], hi)
    delta = c["auc"] - b["auc"]
    lo, hi = c["auc_change_ci"]
    assert lo <= delta <= hi
    # paired: narrower than the two AUC intervals combined as if independent
    wa, wb = np.diff(c["auc_ci"])[0], np.diff(b["auc_ci"])[0]
    assert hi - lo < 0.8 * math.hypot(wa, wb)
    assert "auc_change_ci" not in b


def test_intervals_do_not_depend_on_bundling_or_order():
    rng = np.random.default_rng(5)
    y, pa, pb = _binormal(9000, 1.0, rng)  # > FLUSH_EVERY: folded in chunks
    keys = rng.integers(-2 ** 62, 2 ** 62, size=y.size)
    one = _run(y, pa, pb, keys=keys)
    order = rng.permutation(y.size)
    many = _run(y[order], pa[order], pb[order], keys=keys[order], chunks=7)
    for m in MODELS:
        for name in ("auc_ci", "recall_ci", "fnr_ci"):
            assert np.allclose(one[m][name], many[m][name], atol=1e-12), (m, name)
    assert np.allclose(one["candidate"]["auc_change_ci"], many["candidate"]["auc_change_ci"])


def test_a_slice_of_one_class_has_no_auc_interval_and_small_slices_are_wide():
    y = np.zeros(50)
    pa = np.linspace(0.01, 0.9, 50)
    out = _run(y, pa, pa)
    assert np.isnan(out["candidate"]["auc_ci"]).all()
    assert np.isnan(out["candidate"]["recall_ci"]).all()
    rng = np.random.default_rng(2)
    y, pa, pb = _binormal(120, 1.0, rng)
    lo, hi = _run(y, pa, pb)["candidate"]["auc_ci"]
    assert hi - lo > 0.1


def test_a_missing_key_feature_is_an_error_that_names_it():
    comb, _ = _combiner()
    element = _element(1, 1.0, 0.5, 0.5)
    del element["features"][KEY]
    with pytest.raises(ValueError, match="__example_key.*add_columns"):
        comb.add_input(comb.create_accumulator(), element)


def test_too_few_replicates_are_refused():
    with pytest.raises(ValueError, match="bootstrap_samples 5"):
        tm.BinaryStats(bootstrap_key=KEY, bootstrap_samples=5)


def test_auc_intervals_stay_within_zero_and_one_on_a_near_perfect_slice():
    rng = np.random.default_rng(11)
    y = (rng.random(90) < 0.4).astype(float)
    pa = np.clip(0.02 + 0.9 * y + rng.normal(0, 0.03, 90) + 0.08 * (rng.random(90) < 0.03), 0, 1)
    out = _run(y, pa, 1 - pa)
    lo, hi = out["candidate"]["auc_ci"]
    assert 0.9 < lo <= out["candidate"]["auc"] <= hi <= 1.0
    assert -1.0 <= out["candidate"]["auc_change_ci"][0] <= out["candidate"]["auc_change_ci"][1] <= 1
