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

Binary tasks get one fused combiner too (:class:`BinaryStats`), but it emits TFMA's own metric and
plot keys (``example_count``, ``auc``, ``auc_precision_recall``, ``binary_accuracy``, ``precision``,
..., ``binary_crossentropy``, ``confusion_matrix_plot``, ``calibration_plot``), so the rows, the
blessing and the report read the same names as with TFMA's stock metrics. One computation serves
every model (candidate and baseline): TFMA calls its ``add_input`` once per (example, slice), not
once per (example, slice, model, metric). ``add_input`` only appends the label and each model's
score to plain lists (no ``to_label_prediction_example_weight``); the lists are folded into numpy
accumulators (sums, exact confusion counts at the decision threshold, a histogram of ``num_buckets``
score buckets with label and score sums) every ``FLUSH_EVERY`` examples and before the accumulator
leaves the worker, so memory per (slice, model) is bounded whatever the row count. Counts,
threshold metrics, means, calibration and log loss are exact; AUC, AUC-PR and the plots come from
the histogram (TFMA's stock AUC also sums over 10,000 thresholds: the two agree to the bucket
width, tests/eval/test_fused_metrics.py).
"""

from __future__ import annotations

import math
from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util

MULTICLASS = "multiclass"
BINARY = "binary"
FLUSH_EVERY = 4096
LOG_EPSILON = 1e-15
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


def _lookup(value, model_name: str, output_name: str, key: str | None):
    """A model's value in TFMA's (possibly per-model, per-output) extract, or None if nested deeper
    than this combiner reads directly."""
    if isinstance(value, dict):
        for k in (model_name, output_name, key):
            if isinstance(value, dict) and k and k in value:
                value = value[k]
        if isinstance(value, dict) and len(value) == 1:
            value = next(iter(value.values()))
    return None if isinstance(value, dict) else value


def _scalar(value, what: str) -> float:
    a = np.ravel(value)
    if a.size != 1:
        raise ValueError(f"binary: the {what} has {a.size} values per example; a binary model "
                         "gives one probability (of label.positive_class) and one 0/1 label")
    return float(a[0])


class _BinaryCombiner(beam.CombineFn):
    """Every binary metric and plot of every model, one add_input per (example, slice)."""

    # sums: n, sum y, sum p, sum log loss, tp, fp, tn, fn at the decision threshold
    N_SUMS = 8

    def __init__(self, keys: dict[str, dict[str, Any]], eval_config, models: list[str],
                 output_name: str, decision_threshold: float, num_buckets: int,
                 calibration_buckets: int, plot_thresholds: int):
        self.keys, self.eval_config, self.models = keys, eval_config, models
        self.output_name = output_name
        self.threshold, self.num_buckets = decision_threshold, num_buckets
        self.calibration_buckets, self.plot_thresholds = calibration_buckets, plot_thresholds
        self._pred_keys: dict[str, str | None] | None = None

    def _prediction_keys(self) -> dict[str, str | None]:
        if self._pred_keys is None:
            specs = {s.name: s for s in (self.eval_config.model_specs if self.eval_config else [])}
            self._pred_keys = {m: (specs[m].prediction_key or None) if m in specs else None
                               for m in self.models}
        return self._pred_keys

    def create_accumulator(self):
        # per model: [label list, score list, sums (N_SUMS) or None, histogram (3 x B) or None]
        return {m: [[], [], None, None] for m in self.models}

    def add_input(self, acc, element):
        keys = self._prediction_keys()
        labels, preds = element.get("labels"), element.get("predictions")
        for m in self.models:
            y = _lookup(labels, m, self.output_name, None)
            p = _lookup(preds, m, self.output_name, keys[m])
            if y is None or p is None:  # layout this fast path does not know: TFMA's own lookup
                ((y, p, _),) = metric_util.to_label_prediction_example_weight(
                    element, eval_config=self.eval_config, model_name=m,
                    output_name=self.output_name, flatten=False, squeeze=False)
            a = acc[m]
            a[0].append(_scalar(y, "label"))
            a[1].append(_scalar(p, f"prediction of model {m or 'candidate'}"))
            if len(a[0]) >= FLUSH_EVERY:
                self._flush(a)
        return acc

    def _flush(self, a) -> None:
        if not a[0]:
            return
        y = np.asarray(a[0], dtype=np.float64)
        p = np.asarray(a[1], dtype=np.float64)
        a[0], a[1] = [], []
        if a[2] is None:
            a[2] = np.zeros(self.N_SUMS)
            a[3] = np.zeros((3, self.num_buckets))
        q = np.clip(p, LOG_EPSILON, 1.0 - LOG_EPSILON)
        positive = p > self.threshold
        is_pos = y > 0.5
        a[2] += (y.size, y.sum(), p.sum(), float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).sum()),
                 np.count_nonzero(positive & is_pos), np.count_nonzero(positive & ~is_pos),
                 np.count_nonzero(~positive & ~is_pos), np.count_nonzero(~positive & is_pos))
        b = np.clip((p * self.num_buckets).astype(np.int64), 0, self.num_buckets - 1)
        a[3][0] += np.bincount(b, minlength=self.num_buckets)
        a[3][1] += np.bincount(b, weights=y, minlength=self.num_buckets)
        a[3][2] += np.bincount(b, weights=p, minlength=self.num_buckets)

    def compact(self, acc):
        # Small buffers travel as they are (cheaper to pickle than a histogram); big ones folded.
        for a in acc.values():
            if len(a[0]) >= FLUSH_EVERY // 4:
                self._flush(a)
        return acc

    def merge_accumulators(self, accumulators):
        it = iter(accumulators)
        result = next(it)
        for acc in it:
            for m, a in acc.items():
                r = result[m]
                r[0].extend(a[0])
                r[1].extend(a[1])
                if a[2] is not None:
                    if r[2] is None:
                        r[2], r[3] = a[2].copy(), a[3].copy()
                    else:
                        r[2] += a[2]
                        r[3] += a[3]
                if len(r[0]) >= FLUSH_EVERY:
                    self._flush(r)
        return result

    def extract_output(self, acc):
        out: dict[Any, Any] = {}
        for m, a in acc.items():
            self._flush(a)
            if a[2] is None:
                a[2], a[3] = np.zeros(self.N_SUMS), np.zeros((3, self.num_buckets))
            out.update(self._metrics(self.keys[m], a[2], a[3]))
        return out

    def _metrics(self, keys, sums, hist) -> dict[Any, Any]:
        n, sy, sp, sll, tp, fp, tn, fn = (float(x) for x in sums)
        count, pos_w = hist[0], hist[1]
        neg_w = count - pos_w
        # Counts above each bucket edge k/B (k = 0..B): a threshold sweep from "all positive" down.
        tp_at = np.concatenate([np.cumsum(pos_w[::-1])[::-1], [0.0]])
        fp_at = np.concatenate([np.cumsum(neg_w[::-1])[::-1], [0.0]])
        pos, neg = tp_at[0], fp_at[0]
        return {
            keys["example_count"]: n,
            keys["auc"]: _auc_roc(tp_at, fp_at, pos, neg),
            keys["auc_precision_recall"]: _auc_pr(tp_at, fp_at, pos),
            keys["binary_accuracy"]: _div(tp + tn, n),
            keys["precision"]: _div(tp, tp + fp),
            keys["recall"]: _div(tp, tp + fn),
            keys["f1_score"]: _div(2 * tp, 2 * tp + fp + fn),
            keys["fpr"]: _div(fp, fp + tn),
            keys["fnr"]: _div(fn, fn + tp),
            keys["predicted_positive_rate"]: _div(tp + fp, n),
            keys["calibration"]: _div(sp, sy),
            keys["mean_label"]: _div(sy, n),
            keys["mean_prediction"]: _div(sp, n),
            keys["binary_crossentropy"]: _div(sll, n),
            keys["confusion_matrix_plot"]: self._confusion_plot(tp_at, fp_at, pos, neg),
            keys["calibration_plot"]: self._calibration_plot(hist),
        }

    def _confusion_plot(self, tp_at, fp_at, pos, neg):
        from tensorflow_model_analysis.proto import metrics_for_slice_pb2

        out = metrics_for_slice_pb2.ConfusionMatrixAtThresholds()
        step = self.num_buckets // self.plot_thresholds
        for k in range(0, self.num_buckets + 1, step):
            tp, fp = float(tp_at[k]), float(fp_at[k])
            out.matrices.add(threshold=round(k / self.num_buckets, 6), true_positives=tp,
                             false_positives=fp, true_negatives=neg - fp,
                             false_negatives=pos - tp, precision=_div(tp, tp + fp, 1.0),
                             recall=_div(tp, pos, 0.0))
        return out

    def _calibration_plot(self, hist):
        from tensorflow_model_analysis.proto import metrics_for_slice_pb2

        out = metrics_for_slice_pb2.CalibrationHistogramBuckets()
        groups = hist.reshape(3, self.calibration_buckets, -1).sum(axis=2)
        edges = np.linspace(0.0, 1.0, self.calibration_buckets + 1)
        out.buckets.add(lower_threshold_inclusive=-math.inf, upper_threshold_exclusive=0.0)
        for i in range(self.calibration_buckets):
            b = out.buckets.add(lower_threshold_inclusive=float(edges[i]),
                                upper_threshold_exclusive=float(edges[i + 1]))
            b.num_weighted_examples.value = float(groups[0, i])
            b.total_weighted_label.value = float(groups[1, i])
            b.total_weighted_refined_prediction.value = float(groups[2, i])
        out.buckets.add(lower_threshold_inclusive=1.0, upper_threshold_exclusive=math.inf)
        return out


def _div(a: float, b: float, default: float = float("nan")) -> float:
    return a / b if b else default


def _auc_roc(tp_at, fp_at, pos: float, neg: float) -> float:
    """Trapezoidal ROC AUC over the bucket edges (TFMA's AUC, summation 'interpolation')."""
    if not pos or not neg:
        return float("nan")
    tpr, fpr = tp_at / pos, fp_at / neg
    return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0))


def _auc_pr(tp_at, fp_at, pos: float) -> float:
    """PR AUC with TFMA's careful interpolation (Davis & Goadrich) over the bucket edges."""
    if not pos:
        return float("nan")
    tp, p = tp_at, tp_at + fp_at
    dtp, dp = tp[:-1] - tp[1:], p[:-1] - p[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = dtp / np.maximum(dp, 0)
        intercept = tp[1:] - slope * p[1:]
        ratio = np.divide(p[:-1], p[1:], out=np.ones_like(p[1:]), where=p[1:] != 0)
        inc = slope * (dtp + intercept * np.log(ratio)) / pos
    return float(np.nansum(inc))


_BINARY_METRICS = ("example_count", "auc", "auc_precision_recall", "binary_accuracy", "precision",
                   "recall", "f1_score", "fpr", "fnr", "predicted_positive_rate", "calibration",
                   "mean_label", "mean_prediction", "binary_crossentropy")
_BINARY_PLOTS = ("confusion_matrix_plot", "calibration_plot")


class BinaryStats(metric_types.Metric):
    """Every audited binary metric and plot, for every model, in one combiner (TFMA's key names;
    ``prefix`` prepends to them, for a run that also configures TFMA's stock metrics)."""

    def __init__(self, name: str = BINARY, decision_threshold: float = 0.5,
                 num_buckets: int = AUC_BINS, calibration_buckets: int = 10,
                 plot_thresholds: int = 1000, prefix: str = ""):
        if num_buckets % calibration_buckets or num_buckets % plot_thresholds:
            raise ValueError(f"BinaryStats: num_buckets ({num_buckets}) must be a multiple of "
                             f"calibration_buckets ({calibration_buckets}) and plot_thresholds "
                             f"({plot_thresholds})")

        def create(name: str = BINARY, eval_config=None, model_names=None, output_names=None,
                   decision_threshold=decision_threshold, num_buckets=num_buckets,
                   calibration_buckets=calibration_buckets, plot_thresholds=plot_thresholds,
                   prefix=prefix) -> metric_types.MetricComputations:
            models = list(model_names or [""])
            out = []
            for output_name in output_names or [""]:
                keys = {m: {**{k: metric_types.MetricKey(name=prefix + k, model_name=m,
                                                         output_name=output_name)
                               for k in _BINARY_METRICS},
                            **{k: metric_types.PlotKey(name=prefix + k, model_name=m,
                                                       output_name=output_name)
                               for k in _BINARY_PLOTS}}
                        for m in models}
                out.append(metric_types.MetricComputation(
                    keys=[k for per in keys.values() for k in per.values()], preprocessors=None,
                    combiner=_BinaryCombiner(keys, eval_config, models, output_name,
                                             float(decision_threshold), int(num_buckets),
                                             int(calibration_buckets), int(plot_thresholds))))
            return out

        super().__init__(create, name=name, decision_threshold=decision_threshold,
                         num_buckets=num_buckets, calibration_buckets=calibration_buckets,
                         plot_thresholds=plot_thresholds, prefix=prefix)


metric_types.register_metric(BinaryStats)
metric_types.register_metric(MulticlassStats)
metric_types.register_metric(RegressionStats)
