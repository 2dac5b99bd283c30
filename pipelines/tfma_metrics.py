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

The evaluate step runs these combiners on TFMA's batched extracts (:func:`batched_extractors_and_evaluators`,
issue 11): TFMA's own extractors read, parse and predict per record batch (one model call per batch
and model), :func:`BatchedSliceKeyExtractor` finds the rows of every slice of the batch with numpy
over its Arrow columns, and :func:`BatchedMetricsEvaluator` feeds each (batch, slice) to the
combiner's ``add_batch`` as arrays, then runs TFMA's own derived/diff metrics, validation and
writers. TFMA's per-example stages (unbatching, slice fan-out, StandardMetricInputs, one
add_input per example and slice) do not run; the output files are the ones TFMA's default
evaluator writes with the same metrics (tests/eval/test_fused_metrics.py compares them). A config
with a metric whose combiner has no ``add_batch`` (TFMA's stock metrics: multiclass and regression
use ExampleCount) runs TFMA's default, per-example path.

Confidence intervals come from the same pass (a Poisson bootstrap, issue 11 item 2): every example
carries a 64-bit key (``bootstrap_key``, a hash of its serialized record that
:func:`pipelines.eval_tfma.add_columns` adds), and replicate ``b`` weighs it by a Poisson(1) draw
derived from (key, b) alone (:func:`poisson_weights`, splitmix64), so the weights are the same for
every model, every slice and every run on the same rows: candidate and baseline are resampled
together (the AUC change vs production gets a paired interval) and a retrain on identical data sees
the same resamples. Per replicate the combiner keeps the weighted confusion counts at the decision
threshold (exact) and a weighted histogram of ``BOOT_BUCKETS`` logit-spaced score buckets (AUC).
The 95% interval is the 2.5 / 97.5 percentile of the replicates (``<metric>_ci``: [low, high]);
for AUC the replicates come from the coarser histogram, so the interval is shifted by the point
AUC's difference to that histogram's own AUC. Rows with identical bytes share a key (and a
weight), which a bootstrap over distinct records accepts.
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
BOOTSTRAP_SAMPLES = 100
BOOT_BUCKETS = 200
BOOT_LOGIT_RANGE = 9.0  # buckets span logit(p) in [-9, 9] (p ~ 1e-4 .. 1 - 1e-4); beyond: ends
CI_LEVEL = 0.95
# A replicate without both classes (or nothing predicted positive) has no value; an interval from
# fewer than this share of replicates with a value is not given.
CI_MIN_DEFINED = 0.9
# Poisson(1) CDF: weight k for a uniform u in [CDF[k-1], CDF[k]); P(weight > 9) < 1.2e-7 is 9.
_POISSON_CDF = np.cumsum([math.exp(-1) / math.factorial(k) for k in range(9)])
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
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


def _column_of(value, rows: int, what: str, dtype) -> np.ndarray:
    """One value per example of a batched array (shape (rows,) or (rows, 1))."""
    a = np.asarray(value, dtype=dtype).reshape(-1)
    if a.size != rows:
        raise ValueError(f"binary: the {what} has {a.size} values for {rows} examples; a binary "
                         "model gives one probability (of label.positive_class) and one 0/1 "
                         "label per example")
    return a


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
                 calibration_buckets: int, plot_thresholds: int, bootstrap_key: str = "",
                 bootstrap_samples: int = 0, baseline: str | None = None):
        self.keys, self.eval_config, self.models = keys, eval_config, models
        self.output_name = output_name
        self.threshold, self.num_buckets = decision_threshold, num_buckets
        self.calibration_buckets, self.plot_thresholds = calibration_buckets, plot_thresholds
        self.bootstrap_key = bootstrap_key
        self.samples = bootstrap_samples if bootstrap_key else 0
        self.baseline = baseline
        self._pred_keys: dict[str, str | None] | None = None

    @property
    def batch_features(self) -> list[str]:
        """The features add_batch reads (besides labels and predictions)."""
        return [self.bootstrap_key] if self.samples else []

    def _prediction_keys(self) -> dict[str, str | None]:
        if self._pred_keys is None:
            specs = {s.name: s for s in (self.eval_config.model_specs if self.eval_config else [])}
            self._pred_keys = {m: (specs[m].prediction_key or None) if m in specs else None
                               for m in self.models}
        return self._pred_keys

    def create_accumulator(self):
        # [example keys, per model: [labels, scores, sums (N_SUMS), histogram (3 x B),
        #  replicate confusion counts (R x 4), replicate histograms (R x 2 x BOOT_BUCKETS)]];
        # arrays None until the first flush. R = 1 + samples: row 0 weighs every example 1.
        return [[], {m: [[], [], None, None, None, None] for m in self.models}]

    def _example_key(self, element) -> int:
        features = element.get("features") or {}
        value = features.get(self.bootstrap_key)
        if value is None:
            raise ValueError(f"binary: the examples have no {self.bootstrap_key!r} feature, the "
                             "bootstrap key of the confidence intervals (eval_tfma.add_columns "
                             "adds it; set bootstrap_key to '' to compute no interval)")
        return int(np.ravel(value)[0])

    def add_input(self, acc, element):
        keys = self._prediction_keys()
        labels, preds = element.get("labels"), element.get("predictions")
        if self.samples:
            acc[0].append(self._example_key(element))
        per_model = acc[1]
        for m in self.models:
            y = _lookup(labels, m, self.output_name, None)
            p = _lookup(preds, m, self.output_name, keys[m])
            if y is None or p is None:  # layout this fast path does not know: TFMA's own lookup
                ((y, p, _),) = metric_util.to_label_prediction_example_weight(
                    element, eval_config=self.eval_config, model_name=m,
                    output_name=self.output_name, flatten=False, squeeze=False)
            a = per_model[m]
            a[0].append(_scalar(y, "label"))
            a[1].append(_scalar(p, f"prediction of model {m or 'candidate'}"))
        if len(per_model[self.models[0]][0]) >= FLUSH_EVERY:
            self._flush(acc)
        return acc

    def add_batch(self, acc, batch):
        """add_input for many examples at once (the batched evaluator's (batch, slice) arrays:
        ``batch`` holds TFMA's batched labels, predictions and the ``batch_features``)."""
        keys = self._prediction_keys()
        labels, preds = batch.get("labels"), batch.get("predictions")
        n = batch["rows"]
        if self.samples:
            value = (batch.get("features") or {}).get(self.bootstrap_key)
            if value is None:
                raise ValueError(f"binary: the examples have no {self.bootstrap_key!r} feature, "
                                 "the bootstrap key of the confidence intervals "
                                 "(eval_tfma.add_columns adds it; set bootstrap_key to '' to "
                                 "compute no interval)")
            acc[0].extend(_column_of(value, n, self.bootstrap_key, np.int64).tolist())
        per_model = acc[1]
        for m in self.models:
            y = _lookup(labels, m, self.output_name, None)
            p = _lookup(preds, m, self.output_name, keys[m])
            if y is None or p is None:
                raise ValueError(f"binary: the batched extracts of model {m or 'candidate'!r} "
                                 "hold no label or prediction array this combiner can read "
                                 f"(labels {type(labels).__name__}, predictions "
                                 f"{type(preds).__name__}); run TFMA's per-example path")
            a = per_model[m]
            a[0].extend(_column_of(y, n, "label", np.float64).tolist())
            a[1].extend(_column_of(p, n, f"prediction of model {m or 'candidate'}",
                                   np.float64).tolist())
        if len(per_model[self.models[0]][0]) >= FLUSH_EVERY:
            self._flush(acc)
        return acc

    def _flush(self, acc) -> None:
        n = len(acc[1][self.models[0]][0])
        if not n:
            return
        weights = None
        if self.samples:
            w = np.empty((1 + self.samples, n))
            w[0] = 1.0
            w[1:] = poisson_weights(np.asarray(acc[0], dtype=np.int64), self.samples).T
            weights = w
            acc[0] = []
        for a in acc[1].values():
            self._fold(a, weights)

    def _fold(self, a, weights) -> None:
        y = np.asarray(a[0], dtype=np.float64)
        p = np.asarray(a[1], dtype=np.float64)
        a[0], a[1] = [], []
        if a[2] is None:
            a[2] = np.zeros(self.N_SUMS)
            a[3] = np.zeros((3, self.num_buckets))
        q = np.clip(p, LOG_EPSILON, 1.0 - LOG_EPSILON)
        positive = p > self.threshold
        is_pos = y > 0.5
        cells = np.stack([positive & is_pos, positive & ~is_pos, ~positive & ~is_pos,
                          ~positive & is_pos], axis=1).astype(np.float64)
        a[2] += (y.size, y.sum(), p.sum(), float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).sum()),
                 *cells.sum(axis=0))
        b = np.clip((p * self.num_buckets).astype(np.int64), 0, self.num_buckets - 1)
        a[3][0] += np.bincount(b, minlength=self.num_buckets)
        a[3][1] += np.bincount(b, weights=y, minlength=self.num_buckets)
        a[3][2] += np.bincount(b, weights=p, minlength=self.num_buckets)
        if weights is None:
            return
        if a[4] is None:
            a[4] = np.zeros((weights.shape[0], 4))
            a[5] = np.zeros((weights.shape[0], 2, BOOT_BUCKETS))
        # Weighted counts per (replicate, cell) and (replicate, bucket) with bincount over the
        # flattened (replicate, example) grid: no BLAS (its threads stall on a loaded machine).
        reps = weights.shape[0]
        offset = np.arange(reps)[:, None]
        cell = np.argmax(cells, axis=1)
        a[4] += np.bincount((offset * 4 + cell[None, :]).ravel(), weights=weights.ravel(),
                            minlength=reps * 4).reshape(reps, 4)
        idx = (offset * (2 * BOOT_BUCKETS) + boot_bucket(p)[None, :]).ravel()
        w = weights.ravel()
        a[5] += (np.bincount(idx, weights=w, minlength=reps * 2 * BOOT_BUCKETS)
                 + np.bincount(idx + BOOT_BUCKETS, weights=w * np.tile(is_pos, reps),
                               minlength=reps * 2 * BOOT_BUCKETS)).reshape(reps, 2, BOOT_BUCKETS)

    def compact(self, acc):
        # Small buffers travel as they are (cheaper to pickle than a histogram); big ones folded.
        if len(acc[1][self.models[0]][0]) >= FLUSH_EVERY // 4:
            self._flush(acc)
        return acc

    def merge_accumulators(self, accumulators):
        it = iter(accumulators)
        result = next(it)
        for acc in it:
            result[0].extend(acc[0])
            for m, a in acc[1].items():
                r = result[1][m]
                r[0].extend(a[0])
                r[1].extend(a[1])
                for i in (2, 3, 4, 5):
                    if a[i] is not None:
                        if r[i] is None:
                            r[i] = a[i].copy()
                        else:
                            r[i] += a[i]
            if len(result[1][self.models[0]][0]) >= FLUSH_EVERY:
                self._flush(result)
        return result

    def extract_output(self, acc):
        self._flush(acc)
        out: dict[Any, Any] = {}
        replicates: dict[str, tuple[float, np.ndarray] | None] = {}
        for m, a in acc[1].items():
            if a[2] is None:
                a[2], a[3] = np.zeros(self.N_SUMS), np.zeros((3, self.num_buckets))
            metrics = self._metrics(self.keys[m], a[2], a[3])
            out.update(metrics)
            if self.samples:
                replicates[m] = self._intervals(self.keys[m], a, out, metrics)
        if self.samples and self.baseline in replicates:
            base = replicates[self.baseline]
            for m, rep in replicates.items():
                if m == self.baseline or rep is None or base is None:
                    continue
                # paired: both models' replicates weigh the same examples alike
                shift = ((rep[0] - base[0]) - (rep[1][0] - base[1][0]))
                out[self.keys[m]["auc_change_ci"]] = np.clip(percentile_interval(
                    rep[1][1:] - base[1][1:], shift), -1.0, 1.0)
        return out

    def _intervals(self, keys, a, out, metrics) -> tuple[float, np.ndarray] | None:
        """Writes every ``<metric>_ci``; returns (point AUC, replicate AUCs incl. row 0)."""
        if a[4] is None:
            for name in CI_METRICS:
                out[keys[f"{name}_ci"]] = np.array([np.nan, np.nan])
            return None
        for name, reps in threshold_metrics(a[4][1:]).items():
            out[keys[f"{name}_ci"]] = percentile_interval(reps)
        hist = a[5]
        aucs = auc_from_histograms(hist[:, 1], hist[:, 0] - hist[:, 1])
        point = float(metrics[keys["auc"]])
        # the shift may carry an end past [0, 1] on a near-perfect slice: clip to AUC's range
        out[keys["auc_ci"]] = np.clip(percentile_interval(aucs[1:], point - aucs[0]), 0.0, 1.0)
        return point, aucs

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


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 arrays (wrapping arithmetic): a fixed, well-mixed hash."""
    z = x.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def poisson_weights(keys, samples: int) -> np.ndarray:
    """(len(keys), samples) Poisson(1) weights: entry (i, b) depends on keys[i] and b only.

    ``keys`` are int64 or uint64 (the example keys); the same key gets the same row of weights in
    every call, model, slice and process.
    """
    k = np.asarray(keys).astype(np.int64, copy=False).view(np.uint64)
    with np.errstate(over="ignore"):
        x = k[:, None] + np.arange(1, samples + 1, dtype=np.uint64)[None, :] * _GOLDEN
        u = (_splitmix64(x) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return np.searchsorted(_POISSON_CDF, u, side="right").astype(np.float64)


def boot_bucket(p: np.ndarray, buckets: int = BOOT_BUCKETS) -> np.ndarray:
    """Bucket of each score on a logit-spaced grid (monotone in p: a histogram AUC stays valid)."""
    q = np.clip(p, 1e-12, 1.0 - 1e-12)
    z = np.log(q) - np.log1p(-q)
    i = ((z + BOOT_LOGIT_RANGE) * (buckets / (2 * BOOT_LOGIT_RANGE))).astype(np.int64)
    return np.clip(i, 0, buckets - 1)


def auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of per-bucket positive and negative weights (ascending score buckets;
    ties in a bucket count half); NaN where a row lacks positives or negatives."""
    p, n = pos.sum(axis=-1), neg.sum(axis=-1)
    below = np.cumsum(neg, axis=-1) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=-1) / (p * n)
    return np.where((p > 0) & (n > 0), auc, np.nan)


def threshold_metrics(conf: np.ndarray) -> dict[str, np.ndarray]:
    """TFMA's threshold metrics from confusion counts (..., 4) = tp, fp, tn, fn (NaN: undefined)."""
    tp, fp, tn, fn = (conf[..., i] for i in range(4))
    n = tp + fp + tn + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"binary_accuracy": (tp + tn) / n, "precision": tp / (tp + fp),
                "recall": tp / (tp + fn), "f1_score": 2 * tp / (2 * tp + fp + fn),
                "fpr": fp / (fp + tn), "fnr": fn / (fn + tp),
                "predicted_positive_rate": (tp + fp) / n}


def percentile_interval(replicates: np.ndarray, shift: float = 0.0,
                        level: float = CI_LEVEL) -> np.ndarray:
    """[low, high] percentile interval of the replicates (NaN ones dropped), moved by ``shift``;
    [NaN, NaN] when fewer than CI_MIN_DEFINED of them have a value."""
    r = np.asarray(replicates, dtype=np.float64)
    ok = r[np.isfinite(r)]
    if not r.size or ok.size < CI_MIN_DEFINED * r.size or not math.isfinite(shift):
        return np.array([np.nan, np.nan])
    tail = 100 * (1 - level) / 2
    return np.percentile(ok, [tail, 100 - tail]) + shift


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
# Metrics with a bootstrap interval (key ``<name>_ci``), plus ``auc_change_ci`` (vs the baseline).
CI_METRICS = ("auc", "binary_accuracy", "precision", "recall", "f1_score", "fpr", "fnr",
              "predicted_positive_rate")


class BinaryStats(metric_types.Metric):
    """Every audited binary metric and plot, for every model, in one combiner (TFMA's key names;
    ``prefix`` prepends to them, for a run that also configures TFMA's stock metrics).

    With a ``bootstrap_key`` (an int64 feature of every example) it also gives a 95% interval of
    each metric of CI_METRICS (``<name>_ci``: [low, high]) from ``bootstrap_samples`` Poisson
    replicates, and of the AUC change vs the baseline model (``auc_change_ci``)."""

    def __init__(self, name: str = BINARY, decision_threshold: float = 0.5,
                 num_buckets: int = AUC_BINS, calibration_buckets: int = 10,
                 plot_thresholds: int = 1000, prefix: str = "", bootstrap_key: str = "",
                 bootstrap_samples: int = BOOTSTRAP_SAMPLES):
        if num_buckets % calibration_buckets or num_buckets % plot_thresholds:
            raise ValueError(f"BinaryStats: num_buckets ({num_buckets}) must be a multiple of "
                             f"calibration_buckets ({calibration_buckets}) and plot_thresholds "
                             f"({plot_thresholds})")
        if bootstrap_key and not 20 <= int(bootstrap_samples) <= 10_000:
            raise ValueError(f"BinaryStats: bootstrap_samples {bootstrap_samples} is outside "
                             "20..10000 (a 95% interval needs at least 20 replicates)")

        def create(name: str = BINARY, eval_config=None, model_names=None, output_names=None,
                   decision_threshold=decision_threshold, num_buckets=num_buckets,
                   calibration_buckets=calibration_buckets, plot_thresholds=plot_thresholds,
                   prefix=prefix, bootstrap_key=bootstrap_key,
                   bootstrap_samples=bootstrap_samples) -> metric_types.MetricComputations:
            models = list(model_names or [""])
            specs = eval_config.model_specs if eval_config is not None else []
            baseline = next((s.name for s in specs if s.is_baseline and s.name in models), None)
            intervals = [f"{k}_ci" for k in CI_METRICS] if bootstrap_key else []
            out = []
            for output_name in output_names or [""]:
                def metric_key(k, m, output_name=output_name):
                    return metric_types.MetricKey(name=prefix + k, model_name=m,
                                                  output_name=output_name)

                keys = {m: {**{k: metric_key(k, m) for k in (*_BINARY_METRICS, *intervals)},
                            **{k: metric_types.PlotKey(name=prefix + k, model_name=m,
                                                       output_name=output_name)
                               for k in _BINARY_PLOTS}}
                        for m in models}
                if bootstrap_key and baseline is not None:
                    for m in models:
                        if m != baseline:
                            keys[m]["auc_change_ci"] = metric_key("auc_change_ci", m)
                preprocessors = ([metric_types.FeaturePreprocessor(feature_keys=[bootstrap_key])]
                                 if bootstrap_key else None)
                out.append(metric_types.MetricComputation(
                    keys=[k for per in keys.values() for k in per.values()],
                    preprocessors=preprocessors,
                    combiner=_BinaryCombiner(keys, eval_config, models, output_name,
                                             float(decision_threshold), int(num_buckets),
                                             int(calibration_buckets), int(plot_thresholds),
                                             bootstrap_key, int(bootstrap_samples), baseline)))
            return out

        super().__init__(create, name=name, decision_threshold=decision_threshold,
                         num_buckets=num_buckets, calibration_buckets=calibration_buckets,
                         plot_thresholds=plot_thresholds, prefix=prefix,
                         bootstrap_key=bootstrap_key, bootstrap_samples=bootstrap_samples)


metric_types.register_metric(BinaryStats)
metric_types.register_metric(MulticlassStats)
metric_types.register_metric(RegressionStats)


# ---------------------------------------------------------------------------------------------
# The batched path: TFMA's extracts stay record batches up to the metrics (no per-example
# unbatching, slice fan-out or StandardMetricInputs).

BATCHED_SLICES_KEY = "_pipelines_batched_slices"
BATCHED_SLICES_STAGE = "ExtractBatchedSliceKeys"
BATCHED_EVALUATOR_STAGE = "EvaluateBatchedMetricsAndPlots"
# TFMA's extractors the batched path leaves out: per-example unbatching and slicing (done per
# batch by BatchedSliceKeyExtractor), and the transformed-features pass (labels and predictions
# come from the raw features and the serving signature).
_PER_EXAMPLE_STAGES = ("ExtractUnbatchedInputs", "ExtractSliceKeys", "ExtractSqlSliceKeys",
                       "ExtractTransformedFeatures")


def _slice_value(column: str, value):
    """A slice value as TFMA's slicer gives it: text for bytes, int, float."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f'Found non-UTF8 feature value {value!r} in column "{column}"') from e
    return value


def slice_membership(batch, specs: list[tuple[str, ...]]) -> list[tuple[tuple, np.ndarray]]:
    """Every (slice key, row indices) of an Arrow record batch, for slicing specs given as their
    feature columns: TFMA's slice keys (``((column, value), ...)`` sorted by column; bytes as
    text), one per combination of a row's values of the spec's columns (a row missing a column
    is in no slice of that spec), each row at most once per slice."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    columns: dict[str, Any] = {}

    def column(name: str):
        if name not in columns:
            i = batch.schema.get_field_index(name)
            if i < 0:
                columns[name] = None
                return None
            arr = batch.column(i)
            if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
                lengths = np.asarray(arr.value_lengths().fill_null(0), dtype=np.int64)
                flat = arr.flatten()
            else:
                lengths = np.asarray(arr.is_valid(), dtype=np.int64)
                flat = arr.drop_null()
            enc = pc.dictionary_encode(flat)
            codes = np.asarray(enc.indices, dtype=np.int64)
            values = [_slice_value(name, v) for v in enc.dictionary.to_pylist()]
            starts = np.cumsum(lengths) - lengths
            columns[name] = (lengths, starts, codes, values)
        return columns[name]

    out: list[tuple[tuple, np.ndarray]] = []
    seen: set[tuple[str, ...]] = set()
    for spec in specs:
        cols = tuple(sorted(spec))
        if cols in seen:  # the same spec twice: TFMA counts a row once per slice key
            continue
        seen.add(cols)
        if not cols:
            out.append(((), np.arange(n)))
            continue
        rows = np.arange(n)
        combo = np.zeros((n, 0), dtype=np.int64)
        infos = []
        for c in cols:
            info = column(c)
            if info is None:
                rows = rows[:0]
                break
            infos.append(info)
            lengths, starts, codes, _ = info
            counts = lengths[rows]
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            values = codes[np.repeat(starts[rows], counts) + within]
            combo = np.column_stack([np.repeat(combo, counts, axis=0), values])
            rows = np.repeat(rows, counts)
        if not rows.size:
            continue
        uniq, inverse = np.unique(combo, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        pair = np.unique(inverse * n + rows)  # each (slice, row) once; sorted by slice, row
        slice_of, row_of = pair // n, pair % n
        bounds = np.searchsorted(slice_of, np.arange(len(uniq) + 1))
        for s, codes_row in enumerate(uniq):
            key = tuple((c, info[3][int(code)]) for c, info, code in zip(cols, infos, codes_row,
                                                                          strict=True))
            out.append((key, row_of[bounds[s]:bounds[s + 1]]))
    return out


def _spec_columns(eval_config) -> list[tuple[str, ...]] | None:
    """The slicing specs as feature-column tuples, or None when a spec needs TFMA's slicer
    (feature values, SQL slices, cross slices)."""
    if eval_config.cross_slicing_specs:
        return None
    specs = []
    for s in eval_config.slicing_specs or []:
        if s.feature_values or s.slice_keys_sql:
            return None
        specs.append(tuple(s.feature_keys))
    return specs or [()]


def _take(value, rows: np.ndarray, n: int, what: str):
    """The rows of a batched extract value (nested dicts of arrays)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _take(v, rows, n, f"{what}[{k!r}]") for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n:
        return value[rows]
    if isinstance(value, list) and len(value) == n:
        return [value[i] for i in rows]
    raise ValueError(f"batched evaluation: {what} is a {type(value).__name__} that does not hold "
                     f"one entry per example of the batch ({n}); run TFMA's per-example path")


class BatchSlices:
    """The slices of one record batch in its extract. Neither a mapping nor sized: TFMA's
    batch-size check (util.batch_size, in the predictions extractor) skips it. If a model call
    fails on a whole batch, TFMA's serial retry cannot split this value and the run stops (after
    the model's own error): it never counts a batch's slices per example."""

    __slots__ = ("slices", "rows")

    def __init__(self, slices: list[tuple[tuple, np.ndarray]], rows: int):
        self.slices, self.rows = slices, rows

    def __getstate__(self):
        return self.slices, self.rows

    def __setstate__(self, state):
        self.slices, self.rows = state


class _SlicesDoFn(beam.DoFn):
    """(slice key, that slice's rows of the batch) for every slice of a batched extract."""

    def __init__(self, features: list[str]):
        self.features = features

    def process(self, extracts):
        from tensorflow_model_analysis import constants

        batch = extracts[BATCHED_SLICES_KEY]
        slices, n = batch.slices, batch.rows
        features = extracts.get(constants.FEATURES_KEY) or {}
        missing = [f for f in self.features if f not in features]
        if missing:
            raise ValueError(f"batched evaluation: the examples have no feature(s) {missing} "
                             "that the metrics read")
        inputs = {"labels": extracts.get(constants.LABELS_KEY),
                  "predictions": extracts.get(constants.PREDICTIONS_KEY),
                  "example_weights": extracts.get(constants.EXAMPLE_WEIGHTS_KEY),
                  "features": {f: features[f] for f in self.features}}
        for key, rows in slices:
            part = {k: _take(v, rows, n, k) for k, v in inputs.items()}
            part["rows"] = int(rows.size)
            yield key, part


class _BatchedCombineFn(beam.combiners.SingleInputTupleCombineFn):
    """TFMA's per-slice CombineFn of every computation, fed (batch, slice) arrays."""

    def __init__(self, computations):
        super().__init__(*[c.combiner for c in computations])

    def add_input(self, accumulator, element):
        return tuple(c.add_batch(a, element)  # type: ignore[attr-defined]
                     for c, a in zip(self._combiners, accumulator, strict=True))

    def extract_output(self, accumulator):
        result: dict[Any, Any] = {}
        for c, a in zip(self._combiners, accumulator, strict=True):
            result.update(c.extract_output(a))
        return result


def _batched_computations(eval_config):
    """TFMA's computations of the metrics specs, split as its evaluator does, or None when one of
    them cannot take batches (a stock TFMA metric) or the config needs TFMA's evaluator."""
    from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator as mpv
    from tensorflow_model_analysis.metrics import metric_specs

    opts = eval_config.options
    if (opts.compute_confidence_intervals.value or opts.min_slice_size.value > 1
            or any(s.query_key for s in eval_config.metrics_specs)
            or not opts.HasField("include_default_metrics")
            or opts.include_default_metrics.value):
        return None
    split = mpv._filter_and_separate_computations(
        metric_specs.to_computations(list(eval_config.metrics_specs), eval_config=eval_config))
    if not split.non_derived_computations or not all(
            hasattr(c.combiner, "add_batch") for c in split.non_derived_computations):
        return None
    if split.cross_slice_computations:
        return None
    return split


def batched_extractors_and_evaluators(eval_config, eval_shared_models):
    """(extractors, evaluators) for ``tfma.ExtractEvaluateAndWriteResults`` that keep TFMA's
    extracts batched up to the metrics, or None when the config needs TFMA's per-example path.

    The extractors are TFMA's defaults (features, labels, example weights, predictions: batched,
    one model call per batch and model) without its unbatching, slicing and transformed-features
    stages, after :func:`BatchedSliceKeyExtractor`. The one evaluator computes, per record
    batch, the rows of every slice (numpy over the Arrow columns), feeds each computation's
    combiner ``add_batch`` with that slice's arrays (one CombinePerKey over the slice keys), then
    runs TFMA's own derived and diff metrics (vs the baseline model), private-metric removal,
    split into metrics / plots / attributions and validation: TFMA's writers write the same files
    as with its default evaluator.
    """
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.api import model_eval_lib

    config = model_eval_lib._update_eval_config_with_defaults(eval_config, eval_shared_models)
    specs = _spec_columns(config)
    split = _batched_computations(config)
    if specs is None or split is None:
        return None
    extractors = [BatchedSliceKeyExtractor(specs)] + [
        x for x in tfma.default_extractors(eval_shared_model=eval_shared_models,
                                           eval_config=config)
        if x.stage_name not in _PER_EXAMPLE_STAGES]
    return extractors, [BatchedMetricsEvaluator(config, split)]


def BatchedSliceKeyExtractor(specs: list[tuple[str, ...]]):  # noqa: N802 (TFMA's naming)
    """TFMA extractor: the slices of each record batch (:func:`slice_membership`), stored under
    BATCHED_SLICES_KEY; runs first, on TFMA's Arrow record batch."""
    from tensorflow_model_analysis import constants
    from tensorflow_model_analysis.extractors import extractor

    def extract(extracts):
        batch = extracts[constants.ARROW_RECORD_BATCH_KEY]
        result = dict(extracts)
        result[BATCHED_SLICES_KEY] = BatchSlices(slice_membership(batch, specs), batch.num_rows)
        return result

    return extractor.Extractor(stage_name=BATCHED_SLICES_STAGE, ptransform=beam.Map(extract))


def BatchedMetricsEvaluator(eval_config, split):  # noqa: N802 (TFMA's naming)
    """TFMA evaluator over batched extracts; see :func:`batched_extractors_and_evaluators`."""
    from tensorflow_model_analysis import constants
    from tensorflow_model_analysis.evaluators import evaluator, metrics_validator
    from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator as mpv
    from tensorflow_model_analysis.extractors import extractor
    from tensorflow_model_analysis.utils import model_util

    baseline = model_util.get_baseline_model_spec(eval_config)
    features = sorted({f for c in split.non_derived_computations
                       for f in getattr(c.combiner, "batch_features", [])})

    @beam.ptransform_fn
    def evaluate(extracts):
        sliced = (extracts
                  | "SliceBatches" >> beam.ParDo(_SlicesDoFn(features))
                  | "CombineMetricsPerSlice" >> beam.CombinePerKey(
                      _BatchedCombineFn(split.non_derived_computations))
                  | "AddDerivedCrossSliceAndDiffMetrics" >> mpv._AddDerivedCrossSliceAndDiffMetrics(
                      split.derived_computations, [], [],
                      baseline.name if baseline else None)
                  | "AddCIDerivedMetrics" >> beam.Map(mpv._add_ci_derived_metrics,
                                                      split.ci_derived_computations)
                  | "RemovePrivateMetrics" >> beam.MapTuple(mpv._remove_private_metrics))
        metrics = sliced | "FilterByMetrics" >> beam.Map(mpv._filter_by_key_type,
                                                         metric_types.MetricKey)
        return {
            constants.METRICS_KEY: metrics,
            constants.PLOTS_KEY: sliced | "FilterByPlots" >> beam.Map(
                mpv._filter_by_key_type, metric_types.PlotKey),
            constants.ATTRIBUTIONS_KEY: sliced | "FilterByAttributions" >> beam.Map(
                mpv._filter_by_key_type, metric_types.AttributionsKey),
            constants.VALIDATIONS_KEY: metrics | "ValidateMetrics" >> beam.Map(
                metrics_validator.validate_metrics, eval_config),
        }

    return evaluator.Evaluator(stage_name=BATCHED_EVALUATOR_STAGE,
                               run_after=extractor.LAST_EXTRACTOR_STAGE_NAME,
                               ptransform=evaluate())
