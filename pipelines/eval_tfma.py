"""The TFMA run behind the `evaluate` step: EvalConfig from the pipeline config, one Beam pipeline.

Called by :mod:`pipelines.evaluate` only. TensorFlow, Beam and TFMA are imported inside functions.

One TFMA run scores the candidate and (when there is one) the production baseline on the same rows
of every dataset (the snapshot eval splits and the golden set). Each Arrow record batch read from
the TFRecords gets three extra columns before TFMA sees it:

* ``dataset``: ``eval`` or ``golden``; every slicing spec is crossed with it, so one run yields the
  metrics of both datasets (TFMA's fixed cost is paid once);
* ``age_bucket``: the raw ``age`` bucketed by ``evaluation.age_boundaries`` (e.g. ``25-34``), a
  readable slice that does not depend on the transform's quantiles;
* ``label``: 1 for the configured positive class, else 0 (the raw label column is a string).

The model input is the serialized raw ``tf.Example`` (TFMA's raw record column), fed to the
``serving_default`` signature: the same path as serving.
"""

from __future__ import annotations

import bisect
import json
import math
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig

LABEL_KEY = "label"
DATASET_KEY = "dataset"
AGE_BUCKET_KEY = "age_bucket"
CANDIDATE = "candidate"
BASELINE = "baseline"
CALIBRATION_BUCKETS = 10
# TFMA metric name -> our name. Threshold metrics are computed at evaluation.decision_threshold.
METRIC_NAMES = {
    "example_count": "example_count",
    "auc": "auc",
    "auc_precision_recall": "auc_pr",
    "binary_accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1_score": "f1",
    "fpr": "fpr",
    "fnr": "fnr",
    "calibration": "calibration",
    "mean_label": "mean_label",
    "mean_prediction": "mean_prediction",
    "binary_crossentropy": "log_loss",
}


def age_bucket(age: float, boundaries: list[int]) -> str:
    """``<25``, ``25-34``, ..., ``65+`` for boundaries [25, 35, 45, 55, 65]."""
    i = bisect.bisect_right(boundaries, age)
    if i == 0:
        return f"<{boundaries[0]}"
    if i == len(boundaries):
        return f"{boundaries[-1]}+"
    return f"{boundaries[i - 1]}-{boundaries[i] - 1}"


def eval_config(cfg: PipelineConfig, with_baseline: bool):
    """The TFMA EvalConfig: model specs, slicing specs (crossed with dataset) and metrics."""
    from google.protobuf.wrappers_pb2 import BoolValue
    from tensorflow_model_analysis.proto import config_pb2

    thr = cfg.evaluation.decision_threshold
    at_thr = json.dumps({"thresholds": [thr]})
    metrics = [
        config_pb2.MetricConfig(class_name="ExampleCount"),
        config_pb2.MetricConfig(class_name="AUC"),
        config_pb2.MetricConfig(class_name="AUCPrecisionRecall"),
        config_pb2.MetricConfig(class_name="BinaryAccuracy", config=json.dumps({"threshold": thr})),
        *(config_pb2.MetricConfig(class_name=name, config=at_thr)
          for name in ("Precision", "Recall", "F1Score", "FPR", "FNR")),
        config_pb2.MetricConfig(class_name="Calibration"),
        config_pb2.MetricConfig(class_name="MeanLabel"),
        config_pb2.MetricConfig(class_name="MeanPrediction"),
        config_pb2.MetricConfig(class_name="BinaryCrossEntropy"),
        # Confusion matrices at many thresholds (ROC) and the calibration curve: both derived from
        # the calibration histogram that AUC already computes, so they cost no extra combiner.
        config_pb2.MetricConfig(class_name="ConfusionMatrixPlot", config='{"num_thresholds": 1000}'),
        config_pb2.MetricConfig(class_name="CalibrationPlot",
                                config=json.dumps({"num_buckets": CALIBRATION_BUCKETS})),
    ]
    names = [CANDIDATE, BASELINE] if with_baseline else [CANDIDATE]
    specs = [config_pb2.ModelSpec(name=n, signature_name="serving_default", label_key=LABEL_KEY,
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


def _add_columns(cfg: PipelineConfig, dataset: str):
    """A function that appends the dataset, age_bucket and label columns to a record batch."""
    import numpy as np
    import pyarrow as pa

    boundaries = list(cfg.evaluation.age_boundaries)
    positive = cfg.label.positive_class.encode()
    label_col = cfg.label.column

    def add(batch):
        n = batch.num_rows
        ages = np.asarray(batch.column(batch.schema.get_field_index("age")).flatten())
        labels = batch.column(batch.schema.get_field_index(label_col)).flatten().to_pylist()
        if len(ages) != n or len(labels) != n:
            raise ValueError(f"{dataset}: every example needs exactly one `age` and one "
                             f"`{label_col}` value; found {len(ages)} and {len(labels)} for {n} rows")
        extra = {
            DATASET_KEY: pa.array([[dataset.encode()]] * n, pa.list_(pa.binary())),
            AGE_BUCKET_KEY: pa.array([[age_bucket(a, boundaries).encode()] for a in ages],
                                     pa.list_(pa.binary())),
            LABEL_KEY: pa.array([[int(v == positive)] for v in labels], pa.list_(pa.int64())),
        }
        return pa.RecordBatch.from_arrays(list(batch.columns) + list(extra.values()),
                                          list(batch.schema.names) + list(extra))

    return add


def run(cfg: PipelineConfig, datasets: dict[str, list[str]], candidate_dir: str,
        baseline_dir: str | None, output_path: Path) -> None:
    """Runs TFMA once over every dataset (name -> TFRecord file patterns) and writes its output."""
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tfx_bsl.tfxio import tf_example_record

    from pipelines.beam_options import pipeline_options

    config = eval_config(cfg, baseline_dir is not None)
    models = [tfma.default_eval_shared_model(eval_saved_model_path=candidate_dir,
                                             eval_config=config, model_name=CANDIDATE)]
    if baseline_dir is not None:
        models.append(tfma.default_eval_shared_model(eval_saved_model_path=baseline_dir,
                                                     eval_config=config, model_name=BASELINE))
    with beam.Pipeline(options=pipeline_options(cfg)) as p:
        parts = []
        for name, patterns in datasets.items():
            source = tf_example_record.TFExampleRecord(
                file_pattern=patterns, raw_record_column_name=tfma.ARROW_INPUT_COLUMN,
                telemetry_descriptors=["pipelines", "evaluate"])
            parts.append(p | f"Read[{name}]" >> source.BeamSource()
                         | f"AddColumns[{name}]" >> beam.Map(_add_columns(cfg, name)))
        _ = (parts | "Flatten" >> beam.Flatten()
             | "TFMA" >> tfma.ExtractEvaluateAndWriteResults(
                 eval_shared_model=models if len(models) > 1 else models[0],
                 eval_config=config, output_path=str(output_path)))


def _number(value) -> float | None:
    if value.WhichOneof("type") != "double_value":
        return None
    v = value.double_value.value
    return None if math.isnan(v) else v


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


def load_rows(cfg: PipelineConfig, output_path: Path) -> list[dict[str, Any]]:
    """TFMA's metrics as rows: dataset, slice, and per model a dict of our metric names."""
    import tensorflow_model_analysis as tfma

    rows = []
    for m in tfma.load_metrics(str(output_path)):
        dataset, features = _slice(m.slice_key)
        row: dict[str, Any] = {"dataset": dataset, "spec": sorted(features), "slice": features,
                               "name": slice_name(features), CANDIDATE: {}}
        for kv in m.metric_keys_and_values:
            ours = METRIC_NAMES.get(kv.key.name)
            if ours is None or kv.key.is_diff:
                continue
            row.setdefault(kv.key.model_name or CANDIDATE, {})[ours] = _number(kv.value)
        rows.append(row)
    order = {tuple(sorted(s)): i for i, s in enumerate(cfg.evaluation.slices)}
    rows.sort(key=lambda r: (r["dataset"], order.get(tuple(r["spec"]), 99), r["name"]))
    return rows


def load_curves(output_path: Path, decision_threshold: float) -> dict[str, Any]:
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
                    for m in [min(mats, key=lambda m, t=t: abs(m.threshold - t))]
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
