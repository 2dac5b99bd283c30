"""The TFMA run behind the `evaluate` step: EvalConfig from the pipeline config, one Beam pipeline.

Called by :mod:`pipelines.evaluate` only. TensorFlow, Beam and TFMA are imported inside functions.

One TFMA run scores the candidate and (when there is one) the production baseline on the same rows
of every dataset (the snapshot eval splits and the golden set). Each Arrow record batch read from
the TFRecords gets extra columns before TFMA sees it (:func:`add_columns`):

* ``__dataset``: ``eval`` or ``golden``; every slicing spec is crossed with it, so one run yields the
  metrics of both datasets (TFMA's fixed cost is paid once);
* one column per ``evaluation.slice_features`` entry: the raw column bucketed by its boundaries
  (``<25``, ``25-34``, ..., ``65+``; ``missing`` for a missing value of a nullable column);
* ``__example_key``: a 64-bit hash of the serialized example, the key of the Poisson bootstrap
  behind the binary confidence intervals (the same weights for every model, slice and run);
* ``__label``: what TFMA compares the predictions with, per task (:func:`encode_labels`): binary 0/1
  (1 for ``label.positive_class``, compared in the column's own type), multiclass the class index
  in ``label.classes`` order, regression the float value. A value outside the classes raises.

The model input is the serialized raw ``tf.Example`` (TFMA's raw record column), fed to the
``serving_default`` signature: the same path as serving. The prediction key is ``probabilities``
(binary, multiclass) or ``predictions`` (regression).

TFMA runs with its own extractors and writers; for binary tasks the per-example slicing and
metric stages are replaced by a batched slice finder and evaluator through TFMA's extractor and
evaluator API (:func:`analysis`, :func:`pipelines.tfma_metrics.batched_extractors_and_evaluators`).
The models are loaded once each, as generic SavedModels (:data:`MODEL_TYPE`).

Metrics per task (names in rows, per model; :data:`METRICS`): one custom combiner per task
(:mod:`pipelines.tfma_metrics`). Binary: ``BinaryStats``, one pass for every model that emits TFMA's
own metric and plot names (:data:`BINARY_METRIC_NAMES`; equal to TFMA's stock metrics,
:func:`stock_binary_metrics`, tested); multiclass and regression: raw sums turned into named
metrics here. A metric that is not defined on a slice (AUC on a slice of one class, recall of a class
with no example, R² of a constant label) is ``None`` in the row, with the reason in
``row["undefined"][model][metric]``: never 0.
"""

from __future__ import annotations

import bisect
import json
import math
from pathlib import Path
from typing import Any, TypeGuard

from pipelines.config import PipelineConfig

# Internal column names (dunder: no config column can be called that by accident).
LABEL_KEY = "__label"
DATASET_KEY = "__dataset"
EXAMPLE_KEY = "__example_key"  # int64 hash of the serialized example: the bootstrap's resampling key
MISSING_BUCKET = "missing"
CANDIDATE = "candidate"
BASELINE = "baseline"
CALIBRATION_BUCKETS = 10
BOOTSTRAP_SAMPLES = 100  # Poisson replicates behind each 95% interval (binary)
PLOT_THRESHOLDS = 1000
REGRESSION_PLOT_BUCKETS = 12
CUSTOM_METRICS_MODULE = "pipelines.tfma_metrics"
MODEL_TYPE = "tf_generic"  # tfma.constants.TF_GENERIC: the SavedModel's serving signature
PREDICTION_KEYS = {"binary": "probabilities", "multiclass": "probabilities",
                   "regression": "predictions"}
# Binary: TFMA metric name -> our name. Threshold metrics are computed at decision_threshold.
BINARY_METRIC_NAMES = {
    "example_count": "example_count",
    "auc": "auc",
    "auc_precision_recall": "auc_pr",
    "binary_accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1_score": "f1",
    "fpr": "fpr",
    "fnr": "fnr",
    "predicted_positive_rate": "positive_rate",
    "calibration": "calibration",
    "mean_label": "mean_label",
    "mean_prediction": "mean_prediction",
    "binary_crossentropy": "log_loss",
}
# The metric names of each task's rows (multiclass adds precision[c], recall[c], auc[c] per class).
METRICS: dict[str, tuple[str, ...]] = {
    "binary": tuple(BINARY_METRIC_NAMES.values()),
    "multiclass": ("example_count", "accuracy", "macro_auc", "macro_recall", "log_loss"),
    "regression": ("example_count", "mae", "rmse", "r2", "mean_label", "mean_prediction",
                   "mean_residual"),
}


def prediction_key(cfg: PipelineConfig) -> str:
    """The serving output TFMA reads (pipelines.train.output_key: the model contract)."""
    try:
        from pipelines.train import output_key
    except ImportError:  # pragma: no cover - train without output_key
        return PREDICTION_KEYS[cfg.task]
    return output_key(cfg)


def _num(b: float) -> str:
    return f"{b:g}"


def bucket_names(boundaries: list[float], integer: bool) -> list[str]:
    """Names of the len(boundaries) + 1 buckets: ``<25``, ``25-34``, ..., ``65+`` for an integer
    column with integral boundaries, else ``<2.5``, ``[2.5, 5)``, ..., ``>=10``."""
    if integer and all(float(b).is_integer() for b in boundaries):
        b = [int(x) for x in boundaries]
        return ([f"<{b[0]}"]
                + [f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}" for lo, hi in zip(b, b[1:], strict=False)]
                + [f"{b[-1]}+"])
    return ([f"<{_num(boundaries[0])}"]
            + [f"[{_num(lo)}, {_num(hi)})" for lo, hi in zip(boundaries, boundaries[1:], strict=False)]
            + [f">={_num(boundaries[-1])}"])


def bucketize(values: list[float | None], boundaries: list[float], integer: bool) -> list[str]:
    """The bucket name of each value (``missing`` for None or NaN)."""
    names = bucket_names(boundaries, integer)
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(MISSING_BUCKET)
        else:
            out.append(names[bisect.bisect_right(boundaries, v)])
    return out


def _column(batch, name: str, nullable: bool, dataset: str):
    """One value per row of a raw column (None where missing), from a tf.Example record batch.

    A nullable column is absent from a batch in which no row has a value; any other absent
    column, or a row with no value or several, is an error naming the column.
    """
    i = batch.schema.get_field_index(name)
    n = batch.num_rows
    if i < 0:
        if nullable:
            return [None] * n
        raise ValueError(f"{dataset}: the examples have no column {name!r} (columns: "
                         f"{sorted(batch.schema.names)}); the evaluation needs it")
    cells = batch.column(i).to_pylist()
    out: list[Any] = []
    for cell in cells:
        if not cell:
            if not nullable:
                raise ValueError(f"{dataset}: column {name!r} is missing in a row and is not "
                                 "nullable")
            out.append(None)
        elif len(cell) > 1:
            raise ValueError(f"{dataset}: column {name!r} has {len(cell)} values in one row")
        else:
            out.append(cell[0])
    return out


def encode_labels(cfg: PipelineConfig, values: list) -> list:
    """TFMA's label of each raw label value (bytes or str for string columns, int, float).

    Binary: 1 for positive_class, 0 for the other class; multiclass: index in label.classes;
    regression: float. Compared in the column's own type: an int column's 1 is not the string "1".

    Raises:
        ValueError: a value outside label.classes (named), or a missing label.
    """
    label = cfg.label
    if any(v is None for v in values):
        raise ValueError(f"label column {label.column!r}: a row has no label")
    if label.task == "regression":
        return [float(v) for v in values]
    ltype = cfg.column(label.column).type
    decoded = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
    if ltype == "int":
        decoded = [v if isinstance(v, int) and not isinstance(v, bool) else _int_or_str(v)
                   for v in decoded]
    index = {c: i for i, c in enumerate(label.class_list)}
    bad = sorted({repr(v) for v in decoded if v not in index or isinstance(v, bool)})
    if bad:
        raise ValueError(f"label column {label.column!r} ({ltype}): value(s) {', '.join(bad[:10])} "
                         f"are not in label.classes {label.classes}")
    if label.task == "binary":
        return [int(v == label.positive_class) for v in decoded]
    return [index[v] for v in decoded]


def _int_or_str(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def stock_binary_metrics(decision_threshold: float) -> list:
    """TFMA's own metrics and plots behind :data:`BINARY_METRIC_NAMES`: what the fused
    ``BinaryStats`` combiner replaces (one combiner per metric family and model, each fed per
    example through ``metric_util.to_label_prediction_example_weight``). Kept as the reference
    the fused values are tested against (tests/eval/test_fused_metrics.py)."""
    from tensorflow_model_analysis.proto import config_pb2

    at_thr = json.dumps({"thresholds": [decision_threshold]})
    return [
        config_pb2.MetricConfig(class_name="ExampleCount"),
        config_pb2.MetricConfig(class_name="AUC"),
        config_pb2.MetricConfig(class_name="AUCPrecisionRecall"),
        config_pb2.MetricConfig(class_name="BinaryAccuracy",
                                config=json.dumps({"threshold": decision_threshold})),
        *(config_pb2.MetricConfig(class_name=name, config=at_thr)
          for name in ("Precision", "Recall", "F1Score", "FPR", "FNR", "PredictedPositiveRate")),
        config_pb2.MetricConfig(class_name="Calibration"),
        config_pb2.MetricConfig(class_name="MeanLabel"),
        config_pb2.MetricConfig(class_name="MeanPrediction"),
        config_pb2.MetricConfig(class_name="BinaryCrossEntropy"),
        config_pb2.MetricConfig(class_name="ConfusionMatrixPlot",
                                config=json.dumps({"num_thresholds": PLOT_THRESHOLDS})),
        config_pb2.MetricConfig(class_name="CalibrationPlot",
                                config=json.dumps({"num_buckets": CALIBRATION_BUCKETS})),
    ]


def eval_config(cfg: PipelineConfig, with_baseline: bool):
    """The TFMA EvalConfig: model specs, slicing specs (crossed with dataset) and metrics."""
    from google.protobuf.wrappers_pb2 import BoolValue
    from tensorflow_model_analysis.proto import config_pb2

    task = cfg.task
    if task == "binary":
        metrics = [config_pb2.MetricConfig(
            class_name="BinaryStats", module=CUSTOM_METRICS_MODULE,
            config=json.dumps({"decision_threshold": cfg.evaluation.decision_threshold,
                               "calibration_buckets": CALIBRATION_BUCKETS,
                               "plot_thresholds": PLOT_THRESHOLDS,
                               "bootstrap_key": EXAMPLE_KEY,
                               "bootstrap_samples": BOOTSTRAP_SAMPLES}))]
    elif task == "multiclass":
        metrics = [config_pb2.MetricConfig(class_name="ExampleCount"),
                   config_pb2.MetricConfig(class_name="MulticlassStats",
                                           module=CUSTOM_METRICS_MODULE,
                                           config=json.dumps({"num_classes":
                                                              len(cfg.label.class_list)}))]
    else:
        metrics = [config_pb2.MetricConfig(class_name="ExampleCount"),
                   config_pb2.MetricConfig(class_name="RegressionStats",
                                           module=CUSTOM_METRICS_MODULE)]
    names = [CANDIDATE, BASELINE] if with_baseline else [CANDIDATE]
    specs = [config_pb2.ModelSpec(name=n, signature_name="serving_default", label_key=LABEL_KEY,
                                  prediction_key=prediction_key(cfg),
                                  is_baseline=(n == BASELINE)) for n in names]
    return config_pb2.EvalConfig(
        model_specs=specs,
        slicing_specs=[config_pb2.SlicingSpec(feature_keys=[DATASET_KEY, *s])
                       for s in cfg.evaluation.slices],
        metrics_specs=[config_pb2.MetricsSpec(metrics=metrics, model_names=names)],
        # Only the metrics above: the model's compiled Keras metrics (loss, auc, accuracy) would
        # add a TF-graph combiner per model and reload each SavedModel as Keras in every combiner
        # setup (a third of the step's CPU), and their `auc` shares its key name with TFMA's AUC.
        options=config_pb2.Options(include_default_metrics=BoolValue(value=False)),
    )


def example_keys(records: list[bytes]) -> list[int]:
    """The bootstrap key of each serialized example: the first 8 bytes of its BLAKE2b, as int64."""
    import hashlib

    return [int.from_bytes(hashlib.blake2b(r, digest_size=8).digest(), "little", signed=True)
            for r in records]


def add_columns(cfg: PipelineConfig, dataset: str):
    """A function that appends the dataset, slice feature, example key and label columns to a
    record batch (the batch must hold TFMA's raw record column)."""
    import pyarrow as pa
    import tensorflow_model_analysis as tfma

    features = [(name, f.column, list(f.boundaries), cfg.column(f.column))
                for name, f in cfg.evaluation.slice_features.items()]
    label_col = cfg.label.column
    label_type = {"regression": pa.float32()}.get(cfg.task, pa.int64())

    def add(batch):
        n = batch.num_rows
        extra = {DATASET_KEY: pa.array([[dataset.encode()]] * n, pa.list_(pa.binary()))}
        for name, column, boundaries, col in features:
            raw = _column(batch, column, col.nullable, dataset)
            extra[name] = pa.array([[b.encode()] for b in
                                    bucketize(raw, boundaries, col.type == "int")],
                                   pa.list_(pa.binary()))
        raw_i = batch.schema.get_field_index(tfma.ARROW_INPUT_COLUMN)
        if raw_i >= 0:
            # TFXIO's raw record column is large_list<large_binary>: one record per row
            keys = example_keys([b"".join(r) if isinstance(r, list) else r
                                 for r in batch.column(raw_i).to_pylist()])
        else:  # no serialized record (a batch built in memory): the row's values as the key
            keys = example_keys([repr(r).encode() for r in
                                 zip(*(c.to_pylist() for c in batch.columns), strict=True)])
        extra[EXAMPLE_KEY] = pa.array([[k] for k in keys], pa.list_(pa.int64()))
        labels = encode_labels(cfg, _column(batch, label_col, False, dataset))
        extra[LABEL_KEY] = pa.array([[v] for v in labels], pa.list_(label_type))
        return pa.RecordBatch.from_arrays(list(batch.columns) + list(extra.values()),
                                          list(batch.schema.names) + list(extra))

    return add


READ_BATCH = 1000  # records a record batch (TFXIO's own cap for its adaptive batches)


def dataset_files(datasets: dict[str, list[str]]) -> dict[str, str]:
    """``{file: dataset}`` of every file the datasets' patterns match (Beam's file systems).

    Raises PipelineError when a pattern matches nothing (an audit of no rows checks nothing) or a
    file belongs to two datasets (its rows could not be told apart)."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.errors import PipelineError

    owner: dict[str, str] = {}
    for name, patterns in datasets.items():
        for pattern, found in zip(patterns, FileSystems.match(list(patterns)), strict=True):
            if not found.metadata_list:
                raise PipelineError(f"dataset {name}: no file matches {pattern}; check that the "
                                    "snapshot was written completely")
            for meta in found.metadata_list:
                if owner.setdefault(meta.path, name) != name:
                    raise PipelineError(f"{meta.path} is in datasets {owner[meta.path]} and "
                                        f"{name}: pass each file to one dataset only")
    return owner


def read_datasets(cfg: PipelineConfig, datasets: dict[str, list[str]]):
    """A PTransform from the pipeline to TFMA's record batches of every dataset, each batch of one
    dataset with :func:`add_columns`' columns.

    One read of all files, then per-dataset batches decoded as TFXIO's ``TFExampleRecord`` decodes
    them (tfx_bsl's decoder, the raw record column appended). Not one TFXIO source per dataset
    joined by a Flatten: Beam's in-process runner materializes every Flatten of several inputs, so
    the joined record batches of all rows sat in memory (evaluate's peak grew 2-3 KB a row: 1.2 GB
    at Adult x1, 2.5 GB at x20, 8.3 GB at x100). Here a row leaves memory with its batch.
    """
    import apache_beam as beam

    owner = dataset_files(datasets)
    files = sorted(owner)
    adders = {name: add_columns(cfg, name) for name in datasets}

    class DecodeBatches(beam.DoFn):
        def setup(self):
            from tfx_bsl.coders import example_coder

            self._decoder = example_coder.ExamplesToRecordBatchDecoder()

        def start_bundle(self):
            self._pending: dict[str, list[bytes]] = {}

        def _batch(self, name: str):
            import tensorflow_model_analysis as tfma
            from tfx_bsl.tfxio.record_based_tfxio import AppendRawRecordColumn

            records = self._pending.pop(name)
            batch = AppendRawRecordColumn(self._decoder.DecodeBatch(records),
                                          tfma.ARROW_INPUT_COLUMN, records)
            return adders[name](batch)

        def process(self, item):
            path, record = item
            name = owner[path]
            pending = self._pending.setdefault(name, [])
            pending.append(record)
            if len(pending) >= READ_BATCH:
                yield self._batch(name)

        def finish_bundle(self):
            from apache_beam.transforms.window import GlobalWindows

            for name in sorted(self._pending):
                yield GlobalWindows.windowed_value(self._batch(name))

    @beam.ptransform_fn
    def read(pipeline):
        return (pipeline | "Files" >> beam.Create(files)
                | "Records" >> beam.io.ReadAllFromTFRecord(with_filename=True)
                | "Decode" >> beam.ParDo(DecodeBatches()))

    return read()


def run(cfg: PipelineConfig, datasets: dict[str, list[str]], candidate_dir: str,
        baseline_dir: str | None, output_path: Path) -> None:
    """Runs TFMA once over every dataset (name -> TFRecord file patterns) and writes its output."""
    import apache_beam as beam
    import tensorflow_model_analysis as tfma

    from pipelines.beam_options import pipeline_options

    config = eval_config(cfg, baseline_dir is not None)
    # The model type named, not detected: TFMA's detection loads each SavedModel as Keras once
    # more just to look at it (a third of the step's CPU with two models). The serving signature
    # of a generic SavedModel is all TFMA calls (no Keras object rebuilt).
    typed = type(config)()
    typed.CopyFrom(config)
    for spec in typed.model_specs:
        spec.model_type = MODEL_TYPE
    models = [tfma.default_eval_shared_model(eval_saved_model_path=candidate_dir,
                                             eval_config=typed, model_name=CANDIDATE)]
    if baseline_dir is not None:
        models.append(tfma.default_eval_shared_model(eval_saved_model_path=baseline_dir,
                                                     eval_config=typed, model_name=BASELINE))
    with beam.Pipeline(options=pipeline_options(cfg, step="evaluate")) as p:
        _ = (p | "Read" >> read_datasets(cfg, datasets)
             | "TFMA" >> analysis(config, models, output_path))


def analysis(config, models: list, output_path: Path, batched: bool = True):
    """TFMA's ExtractEvaluateAndWriteResults for ``config`` and the shared ``models`` (none: the
    predictions are features, TFMA's model-free path). With ``batched`` (and a config whose
    metrics can take batches: BinaryStats) it runs with the batched extractors and evaluator of
    :func:`pipelines.tfma_metrics.batched_extractors_and_evaluators` (no per-example unbatching,
    slice fan-out or metric inputs); otherwise TFMA's defaults. The output files are TFMA's either
    way."""
    import tensorflow_model_analysis as tfma

    shared = models if len(models) > 1 else (models[0] if models else None)
    plan = None
    if batched:
        from pipelines import tfma_metrics

        plan = tfma_metrics.batched_extractors_and_evaluators(config, shared)
    extractors, evaluators = plan if plan is not None else (None, None)
    return tfma.ExtractEvaluateAndWriteResults(
        eval_shared_model=shared, eval_config=config, extractors=extractors,
        evaluators=evaluators, output_path=str(output_path))


def _value(value):
    """A TFMA MetricValue as a float (NaN kept: derive() says why) or a numpy array, else None."""
    import numpy as np

    kind = value.WhichOneof("type")
    if kind == "double_value":
        return value.double_value.value
    if kind == "array_value":
        a = value.array_value
        data = {a.FLOAT64: a.float64_values, a.FLOAT32: a.float32_values,
                a.INT64: a.int64_values, a.INT32: a.int32_values}.get(a.data_type)
        return None if data is None else np.asarray(data, dtype=float).reshape(tuple(a.shape))
    return None


def _slice(slice_key) -> tuple[str, dict[str, str]]:
    dataset, features = "", {}
    for k in slice_key.single_slice_keys:
        v = k.bytes_value.decode() if k.HasField("bytes_value") else (
            k.int64_value if k.HasField("int64_value") else k.float_value)
        if k.column == DATASET_KEY:
            dataset = str(v)
        else:
            features[k.column] = str(v)
    return dataset, features


def slice_name(features: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in features.items()) or "overall"


def _finite(v: Any) -> TypeGuard[float]:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _derive_binary(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    out = {ours: raw.get(tfma_name) for tfma_name, ours in BINARY_METRIC_NAMES.items()}
    undefined: dict[str, str] = {}
    n, ml = raw.get("example_count"), raw.get("mean_label")
    if _finite(n) and _finite(ml):
        pos = round(ml * n)
        neg = round(n - pos)
        if pos == 0 or neg == 0:
            one = f"the slice holds one class only ({pos} positive, {neg} negative)"
            undefined["auc"] = f"{one}: ROC AUC needs both"
        if pos == 0:
            for m in ("auc_pr", "recall", "fnr", "calibration"):
                undefined[m] = f"no positive example on this slice ({neg} negative)"
        if neg == 0:
            undefined["fpr"] = f"no negative example on this slice ({pos} positive)"
    for m, v in out.items():
        if m not in undefined and not _finite(v):
            undefined[m] = {"precision": "no example predicted positive on this slice"}.get(
                m, "not defined on this slice (TFMA gave no number)")
    return {m: (None if m in undefined else v) for m, v in out.items()}, undefined


def _derive_multiclass(raw: dict[str, Any], classes: list) -> tuple[dict[str, Any], dict[str, str]]:
    import numpy as np

    from pipelines.tfma_metrics import MULTICLASS

    cm = raw.get(f"{MULTICLASS}_confusion")
    aucs = raw.get(f"{MULTICLASS}_auc")
    out: dict[str, Any] = {"example_count": raw.get("example_count")}
    undefined: dict[str, str] = {}
    if cm is None or aucs is None:
        for m in METRICS["multiclass"][1:]:
            out[m], undefined[m] = None, "the multiclass statistics are missing from TFMA's output"
        return out, undefined
    cm = np.asarray(cm).reshape(len(classes), len(classes))
    n, counts, predicted = cm.sum(), cm.sum(axis=1), cm.sum(axis=0)
    out["accuracy"] = float(np.trace(cm) / n) if n else None
    recalls, slice_aucs = [], []
    for i, c in enumerate(classes):
        name = str(c)
        if predicted[i]:
            out[f"precision[{name}]"] = float(cm[i, i] / predicted[i])
        else:
            out[f"precision[{name}]"] = None
            undefined[f"precision[{name}]"] = f"no example predicted {name} on this slice"
        if counts[i]:
            out[f"recall[{name}]"] = float(cm[i, i] / counts[i])
            recalls.append(out[f"recall[{name}]"])
        else:
            out[f"recall[{name}]"] = None
            undefined[f"recall[{name}]"] = f"no example of class {name} on this slice"
        if 0 < counts[i] < n and not math.isnan(aucs[i]):
            out[f"auc[{name}]"] = float(aucs[i])
            slice_aucs.append(float(aucs[i]))
        else:
            out[f"auc[{name}]"] = None
            undefined[f"auc[{name}]"] = (f"no example of class {name} on this slice" if not counts[i]
                                         else f"every example on this slice is class {name}")
    present = [str(c) for i, c in enumerate(classes) if counts[i]]
    out["macro_recall"] = float(np.mean(recalls)) if recalls else None
    out["macro_auc"] = float(np.mean(slice_aucs)) if slice_aucs else None
    if not slice_aucs:
        undefined["macro_auc"] = (f"the slice holds one class only ({', '.join(present)}): "
                                  "one-vs-rest AUC needs two")
    if not recalls:
        undefined["macro_recall"] = "no example on this slice"
    ll = raw.get(f"{MULTICLASS}_log_loss")
    out["log_loss"] = float(ll) if _finite(ll) else None
    if out["log_loss"] is None:
        undefined["log_loss"] = "no example on this slice"
    if out["accuracy"] is None:
        undefined["accuracy"] = "no example on this slice"
    return out, undefined


def _derive_regression(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    from pipelines.tfma_metrics import REGRESSION

    sums = raw.get(f"{REGRESSION}_sums")
    out: dict[str, Any] = {"example_count": raw.get("example_count")}
    if sums is None or not sums[0]:
        reason = "no example on this slice" if sums is not None else \
            "the regression statistics are missing from TFMA's output"
        return ({**out, **{m: None for m in METRICS["regression"][1:]}},
                {m: reason for m in METRICS["regression"][1:]})
    n, sy, syy, sp, sr, sabs, srr = (float(x) for x in sums)
    sst = syy - sy * sy / n
    out.update(mae=sabs / n, rmse=math.sqrt(srr / n), mean_label=sy / n, mean_prediction=sp / n,
               mean_residual=sr / n)
    undefined: dict[str, str] = {}
    if sst <= 1e-12 * max(syy, 1.0):
        out["r2"] = None
        undefined["r2"] = (f"the label is constant on this slice ({sy / n:g} for all {n:.0f} "
                           "examples): R² needs a label variance")
    else:
        out["r2"] = 1.0 - srr / sst
    return out, undefined


def derive(cfg: PipelineConfig, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """One model's named metrics on one slice from TFMA's raw values (``raw``: TFMA metric name
    -> float or array), and why each undefined one is undefined (metric -> reason)."""
    if cfg.task == "binary":
        return _derive_binary(raw)
    if cfg.task == "multiclass":
        return _derive_multiclass(raw, cfg.label.class_list)
    return _derive_regression(raw)


def _raw_metrics(output_path: Path):
    """(dataset, slice features, {model: {TFMA metric name: value}}) per slice of TFMA's output."""
    import tensorflow_model_analysis as tfma

    for m in tfma.load_metrics(str(output_path)):
        dataset, features = _slice(m.slice_key)
        per_model: dict[str, dict[str, Any]] = {}
        for kv in m.metric_keys_and_values:
            if kv.key.is_diff:
                continue
            per_model.setdefault(kv.key.model_name or CANDIDATE, {})[kv.key.name] = \
                _value(kv.value)
        yield dataset, features, per_model


def intervals(raw: dict[str, Any], metrics: dict[str, Any]) -> dict[str, list[float]]:
    """The 95% bootstrap interval [low, high] of each metric that has one and is defined on the
    slice (our names; ``auc_change``: candidate minus baseline, paired), from ``<name>_ci``."""
    out: dict[str, list[float]] = {}
    names = {**BINARY_METRIC_NAMES, "auc_change": "auc_change"}
    for tfma_name, ours in names.items():
        ci = raw.get(f"{tfma_name}_ci")
        if ci is None or (ours != "auc_change" and metrics.get(ours) is None):
            continue
        lo, hi = (float(x) for x in ci.ravel()[:2])
        if _finite(lo) and _finite(hi):
            out[ours] = [lo, hi]
    return out


def load_rows(cfg: PipelineConfig, output_path: Path) -> list[dict[str, Any]]:
    """TFMA's metrics as rows: dataset, slice, per model a dict of our metric names (None where
    undefined), ``undefined``: per model, metric -> why it is undefined on this slice, and (binary)
    ``intervals``: per model, metric -> 95% bootstrap interval [low, high] (``auc_change``: the
    candidate's AUC minus production's)."""
    rows = []
    for dataset, features, per_model in _raw_metrics(output_path):
        row: dict[str, Any] = {"dataset": dataset, "spec": sorted(features), "slice": features,
                               "name": slice_name(features), CANDIDATE: {}, "undefined": {}}
        for model, raw in sorted(per_model.items()):
            row[model], why = derive(cfg, raw)
            if why:
                row["undefined"][model] = why
            ci = intervals(raw, row[model])
            if ci:
                row.setdefault("intervals", {})[model] = ci
        rows.append(row)
    order = {tuple(sorted(s)): i for i, s in enumerate(cfg.evaluation.slices)}
    rows.sort(key=lambda r: (r["dataset"], order.get(tuple(r["spec"]), 99), r["name"]))
    return rows


def _merge_bins(bins: list[dict[str, float]], groups: int) -> list[dict[str, float]]:
    """Adjacent non-empty bins merged into about ``groups`` groups of similar counts."""
    total = sum(b["count"] for b in bins)
    out: list[dict[str, float]] = []
    cur: dict[str, float] | None = None
    for b in bins:
        if not b["count"]:
            continue
        if cur is None:
            cur = dict(b)
        else:
            cur["high"] = b["high"]
            for k in b:
                if k not in ("low", "high"):
                    cur[k] += b[k]
        if cur["count"] >= total / groups:
            out.append(cur)
            cur = None
    if cur is not None:
        out.append(cur)
    return out


def _regression_curves(raw: dict[str, Any]) -> dict[str, Any]:
    from pipelines.tfma_metrics import REGRESSION, value_bin_edges

    edges = value_bin_edges()
    by_pred, resid = raw.get(f"{REGRESSION}_by_prediction"), raw.get(f"{REGRESSION}_residuals")
    out: dict[str, Any] = {}
    if by_pred is not None:
        by_pred = by_pred.reshape(len(edges), 3)
        bins = [{"low": lo, "high": hi, "count": float(c), "sum_label": float(y),
                 "sum_prediction": float(p)} for (lo, hi), (c, y, p) in zip(edges, by_pred,
                                                                             strict=True)]
        out["calibration"] = [
            {"low": b["low"], "high": b["high"], "count": b["count"],
             "mean_label": b["sum_label"] / b["count"],
             "mean_prediction": b["sum_prediction"] / b["count"]}
            for b in _merge_bins(bins, REGRESSION_PLOT_BUCKETS)]
    if resid is not None:
        bins = [{"low": lo, "high": hi, "count": float(c)}
                for (lo, hi), c in zip(edges, resid.ravel(), strict=True)]
        out["residuals"] = _merge_bins(bins, 2 * REGRESSION_PLOT_BUCKETS)
    for b in out.get("calibration", []) + out.get("residuals", []):
        b["low"] = None if math.isinf(b["low"]) else b["low"]
        b["high"] = None if math.isinf(b["high"]) else b["high"]
    return out


def load_curves(cfg: PipelineConfig, output_path: Path) -> dict[str, Any]:
    """The plots of the overall slice of each dataset, per model.

    binary: ROC points, calibration buckets, confusion matrices at a few thresholds; multiclass:
    the confusion matrix (rows true class, columns predicted class, in label.classes order);
    regression: mean label vs mean prediction per prediction bucket, and the residual histogram.
    """
    curves: dict[str, Any] = {}
    if cfg.task == "binary":
        return _binary_curves(output_path, cfg.evaluation.decision_threshold)
    from pipelines.tfma_metrics import MULTICLASS

    for dataset, features, per_model in _raw_metrics(output_path):
        if features:
            continue
        for model, raw in per_model.items():
            out = curves.setdefault(dataset, {}).setdefault(model, {})
            if cfg.task == "multiclass":
                cm = raw.get(f"{MULTICLASS}_confusion")
                if cm is not None:
                    out["confusion_matrix"] = {"classes": [str(c) for c in cfg.label.class_list],
                                               "matrix": cm.tolist()}
            else:
                out.update(_regression_curves(raw))
    return curves


def _binary_curves(output_path: Path, decision_threshold: float) -> dict[str, Any]:
    """ROC points, calibration buckets and confusion matrices of the overall slice of each dataset."""
    import tensorflow_model_analysis as tfma

    curves: dict[str, Any] = {}
    for p in tfma.load_plots(str(output_path)):
        dataset, features = _slice(p.slice_key)
        if features:
            continue
        for kv in p.plot_keys_and_values:
            model = kv.key.model_name or CANDIDATE
            out = curves.setdefault(dataset, {}).setdefault(model, {})
            v = kv.value
            if v.HasField("confusion_matrix_at_thresholds"):
                mats = v.confusion_matrix_at_thresholds.matrices
                roc = []
                for m in mats:
                    pos, neg = m.true_positives + m.false_negatives, m.false_positives + m.true_negatives
                    roc.append([m.false_positives / neg if neg else 0.0,
                                m.true_positives / pos if pos else 0.0])
                out["roc"] = roc[:: max(1, len(roc) // 200)] + [roc[-1]] if roc else []
                wanted = sorted({0.1, 0.25, 0.5, 0.75, 0.9, decision_threshold})
                out["confusion_matrices"] = [
                    {"threshold": round(m.threshold, 4), "tp": m.true_positives,
                     "fp": m.false_positives, "tn": m.true_negatives, "fn": m.false_negatives}
                    for t in wanted
                    for m in [min(mats, key=lambda m, t=t: abs(m.threshold - t))]  # type: ignore[misc]
                ] if mats else []
            if v.HasField("calibration_histogram_buckets"):
                out["calibration"] = [
                    {"low": max(b.lower_threshold_inclusive, 0.0),
                     "high": min(b.upper_threshold_exclusive, 1.0),
                     "count": b.num_weighted_examples.value,
                     "mean_label": b.total_weighted_label.value / b.num_weighted_examples.value,
                     "mean_prediction": (b.total_weighted_refined_prediction.value
                                         / b.num_weighted_examples.value)}
                    for b in v.calibration_histogram_buckets.buckets
                    if b.num_weighted_examples.value > 0
                ]
    return curves
