"""Custom TFMA metrics of the `evaluate` step: multiclass and regression statistics in one pass.

Imported by TFMA (by module name, from the EvalConfig that :mod:`pipelines.eval_tfma` builds), never
by the pipeline steps directly: it imports TFMA and Beam at module level.

TFMA has no R squared, no log loss for class-index labels (its CategoricalCrossEntropy wants one-hot
labels) and no residual histogram, and each of its metrics is its own per-example combiner (the
step's main cost). So each task type gets one combiner that accumulates raw sums and histograms;
:func:`pipelines.eval_tfma.load_rows` turns them into the named metrics (accuracy, precision[c],
auc[c], macro_auc, rmse, r2, ...), and decides which are undefined on a slice. The arrays are:

* ``multiclass_confusion``: K x K counts, rows the true class index, columns the arg-max class;
* ``multiclass_auc``: one-vs-rest AUC per class (NaN where a slice lacks positives or negatives),
  from a histogram of each class's probability in ``AUC_BINS`` bins;
* ``multiclass_log_loss``: mean of -log p(true class), p clipped to [1e-7, 1];
* ``regression_sums``: n, sum y, sum y², sum p, sum (y - p), sum |y - p|, sum (y - p)²;
* ``regression_by_prediction``: per prediction bin (``value_bins``), count, sum y, sum p;
* ``regression_residuals``: per residual bin (``value_bins``), count.
"""

from __future__ import annotations

import math
from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util

MULTICLASS = "multiclass"
REGRESSION = "regression"
AUC_BINS = 10_000
EPSILON = 1e-7
# Value bins shared by the regression histograms: log-uniform in |x| (BINS_PER_DECADE per decade
# from 10**MIN_EXP to 10**MAX_EXP), mirrored for negatives, one bin for |x| < 10**MIN_EXP. Scale
# free, so a fixed grid fits any target; the report merges them into a few readable buckets.
MIN_EXP, MAX_EXP, BINS_PER_DECADE = -3, 7, 20
HALF = (MAX_EXP - MIN_EXP) * BINS_PER_DECADE
N_VALUE_BINS = 2 * HALF + 1


def value_bin(x: float) -> int:
    """Index of ``x`` in the mirrored log-uniform grid (0 .. N_VALUE_BINS - 1; HALF is ~0)."""
    a = abs(x)
    if not a >= 10.0 ** MIN_EXP:  # also NaN
        return HALF
    i = min(int((math.log10(a) - MIN_EXP) * BINS_PER_DECADE), HALF - 1)
    return HALF + 1 + i if x > 0 else HALF - 1 - i


def value_bin_edges() -> list[tuple[float, float]]:
    """(low, high) of every value bin, in bin order."""
    pos = [(10.0 ** (MIN_EXP + i / BINS_PER_DECADE), 10.0 ** (MIN_EXP + (i + 1) / BINS_PER_DECADE))
           for i in range(HALF)]
    pos[-1] = (pos[-1][0], math.inf)
    zero = 10.0 ** MIN_EXP
    return [(-h, -lo) for lo, h in reversed(pos)] + [(-zero, zero)] + pos


def _examples(combiner, element):
    for label, prediction, _ in metric_util.to_label_prediction_example_weight(
            element, eval_config=combiner.eval_config, model_name=combiner.model_name,
            output_name=combiner.output_name, flatten=False, squeeze=False):
        yield np.ravel(label), np.ravel(prediction).astype(np.float64)


class _Combiner(beam.CombineFn):
    def __init__(self, keys: dict[str, Any], eval_config, model_name: str, output_name: str,
                 **params):
        self.keys, self.eval_config = keys, eval_config
        self.model_name, self.output_name = model_name, output_name
        self.params = params

    def merge_accumulators(self, accumulators):
        it = iter(accumulators)
        result = next(it)
        for acc in it:
            for name, value in acc.items():
                result[name] = result[name] + value
        return result


class _MulticlassCombiner(_Combiner):
    def create_accumulator(self):
        k = self.params["num_classes"]
        return {"confusion": np.zeros((k, k)), "pos": np.zeros((k, AUC_BINS)),
                "neg": np.zeros((k, AUC_BINS)), "log_loss": np.zeros(1)}

    def add_input(self, acc, element):
        k = self.params["num_classes"]
        for label, prob in _examples(self, element):
            if prob.shape != (k,):
                raise ValueError(f"multiclass: the model gave {prob.shape[0]} probabilities per "
                                 f"example for {k} classes (label.classes)")
            y = int(label[0])
            if not 0 <= y < k:
                raise ValueError(f"multiclass: label index {y} outside 0..{k - 1}")
            acc["confusion"][y, int(np.argmax(prob))] += 1
            bins = np.minimum((prob * AUC_BINS).astype(np.int64), AUC_BINS - 1).clip(0)
            is_true = np.arange(k) == y
            acc["pos"][y, bins[y]] += 1
            rest = np.nonzero(~is_true)[0]
            acc["neg"][rest, bins[rest]] += 1
            acc["log_loss"][0] -= math.log(min(max(float(prob[y]), EPSILON), 1.0))
        return acc

    def extract_output(self, acc):
        k = self.params["num_classes"]
        aucs = np.full(k, np.nan)
        for c in range(k):
            pos, neg = acc["pos"][c], acc["neg"][c]
            p, n = pos.sum(), neg.sum()
            if p > 0 and n > 0:
                below = np.cumsum(neg) - neg
                aucs[c] = float((pos * (below + 0.5 * neg)).sum() / (p * n))
        n = acc["confusion"].sum()
        return {self.keys["confusion"]: acc["confusion"], self.keys["auc"]: aucs,
                self.keys["log_loss"]: float(acc["log_loss"][0] / n) if n else float("nan")}


class _RegressionCombiner(_Combiner):
    def create_accumulator(self):
        return {"sums": np.zeros(7), "by_prediction": np.zeros((N_VALUE_BINS, 3)),
                "residuals": np.zeros(N_VALUE_BINS)}

    def add_input(self, acc, element):
        sums, by_pred = acc["sums"], acc["by_prediction"]
        for label, pred in _examples(self, element):
            y, p = float(label[0]), float(pred[0])
            r = y - p
            sums += (1.0, y, y * y, p, r, abs(r), r * r)
            row = by_pred[value_bin(p)]
            row += (1.0, y, p)
            acc["residuals"][value_bin(r)] += 1
        return acc

    def extract_output(self, acc):
        return {self.keys["sums"]: acc["sums"], self.keys["by_prediction"]: acc["by_prediction"],
                self.keys["residuals"]: acc["residuals"]}


def _computations(prefix: str, parts: tuple[str, ...], combiner_cls):
    def create(name: str = prefix, eval_config=None, model_names=None, output_names=None,
               num_classes: int | None = None) -> metric_types.MetricComputations:
        params = {"num_classes": num_classes} if num_classes is not None else {}
        out = []
        for model_name in model_names or [""]:
            for output_name in output_names or [""]:
                keys = {p: metric_types.MetricKey(name=f"{name}_{p}", model_name=model_name,
                                                  output_name=output_name) for p in parts}
                out.append(metric_types.MetricComputation(
                    keys=list(keys.values()), preprocessors=None,
                    combiner=combiner_cls(keys, eval_config, model_name, output_name, **params)))
        return out

    return create


class MulticlassStats(metric_types.Metric):
    """Confusion matrix, one-vs-rest AUC per class and log loss, for class-index labels."""

    def __init__(self, name: str = MULTICLASS, num_classes: int = 3):
        super().__init__(_computations(name, ("confusion", "auc", "log_loss"),
                                       _MulticlassCombiner),
                         name=name, num_classes=num_classes)


class RegressionStats(metric_types.Metric):
    """Sums behind MAE, RMSE, R², means and mean residual, and the residual histograms."""

    def __init__(self, name: str = REGRESSION):
        super().__init__(_computations(name, ("sums", "by_prediction", "residuals"),
                                       _RegressionCombiner), name=name)


metric_types.register_metric(MulticlassStats)
metric_types.register_metric(RegressionStats)
