"""The Keras model and its tf.data input, built from the transformed schema alone.

Called by ``pipelines.train``. Nothing here knows the Adult columns: float features are fed as
they are, integer features with a domain (vocabulary ids, buckets, hashed crosses) are one-hot
encoded when small and embedded when large, and the label is ``<label column>_xf``. A new use
case therefore needs only its own ``transforms/<pipeline>.py``.

The head depends on ``cfg.task`` (:data:`HEADS`): binary one sigmoid unit, multiclass one
softmax unit per class, regression one linear unit rescaled to the target's units. Layer names are
fixed (``hidden_<i>``, ``embed_<feature>``, ``deep_logit``, ``wide``) whatever the task, so a warm
start matches variables by name and shape; a head of another size is kept fresh and reported.

Speed and memory of training (benchmarks/results/train.md): the input is parsed a batch at a time;
the serialized train records are cached in memory only while the split's files total at most
:data:`CACHE_MAX_BYTES` (Adult: 16 MB), so memory does not grow with rows beyond that (the shuffle
buffer holds at most ``SHUFFLE_BUFFER`` records). With the number of rows known (the dataset's
cardinality), Keras runs several batches per call of its train and test functions when an epoch is
long (:func:`steps_per_execution`): the same steps in the same order, without a Python round trip
per batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ONE_HOT_MAX = 64  # integer features with at most this many values are one-hot, larger embedded
EMBED_DIM_MAX = 16
# The serialized records of a split are cached in memory below this size, read again per epoch above.
CACHE_MAX_BYTES = 64 * 1024 * 1024
SHUFFLE_BUFFER = 100_000  # records; Adult's train split (26k rows) is shuffled whole
# Batches per call of Keras' train/test function for an epoch of at least SPE_MIN_BATCHES batches.
STEPS_PER_EXECUTION = 64
SPE_MIN_BATCHES = 256


def label_key(cfg: Any) -> str:
    """Transformed name of the label (the transform module's contract: ``<column>_xf``)."""
    return f"{cfg.label.column}_xf"


def split_features(tft_output: Any, label: str) -> tuple[list[str], dict[str, int]]:
    """Numeric feature names, and categorical feature name -> number of values, from the schema."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    numeric, categorical = [], {}
    for feature in tft_output.transformed_metadata.schema.feature:
        if feature.name == label:
            continue
        if feature.type == schema_pb2.INT and feature.HasField("int_domain"):
            categorical[feature.name] = int(feature.int_domain.max) + 1
        else:
            numeric.append(feature.name)
    if label not in tft_output.transformed_feature_spec():
        raise ValueError(f"the transform graph has no label feature {label!r}; the transform "
                         "module must output the label as <label column>_xf")
    return sorted(numeric), dict(sorted(categorical.items()))


def to_model_inputs(features: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Transformed tensors ``[batch]`` -> model inputs ``[batch, 1]`` (drops everything else)."""
    import tensorflow as tf

    return {name: tf.reshape(features[name], [-1, 1]) for name in names}


def should_cache(files: list[str], limit: int | None = None) -> bool:
    """Whether ``files`` total at most ``limit`` bytes (:data:`CACHE_MAX_BYTES`): small enough to
    keep their records in memory between epochs."""
    import tensorflow as tf

    limit = CACHE_MAX_BYTES if limit is None else limit
    return sum(tf.io.gfile.stat(f).length for f in files) <= limit


def steps_per_execution(batches_per_epoch: int) -> int:
    """Batches per call of the compiled train/test function for an epoch of this many batches.

    Measured on Adult (benchmarks/results/train.md): running 64 batches per call saves about 2 ms
    of CPU a batch (25-30% of a step of the Adult model), but tracing the multi-step loop costs
    about 2 s once; below :data:`SPE_MIN_BATCHES` batches an epoch (Adult x1: 102) it does not pay.
    """
    return STEPS_PER_EXECUTION if batches_per_epoch >= SPE_MIN_BATCHES else 1


def make_dataset(pattern: str, tft_output: Any, label: str, batch_size: int, *,
                 shuffle: bool, seed: int, names: list[str], rows: int | None = None,
                 cache: bool | None = None):
    """A tf.data pipeline of (features, label) batches from transformed TFRecords.

    Args:
        rows: the number of records in the files; when given, the dataset's cardinality is set
            (Keras then knows the epoch's length and can run several steps per call).
        cache: keep the serialized records in memory after the first epoch; None decides by
            size (:func:`should_cache`).
    """
    import tensorflow as tf

    spec = tft_output.transformed_feature_spec()
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed data matches {pattern}; run the transform step")
    ds = tf.data.TFRecordDataset(files)
    if should_cache(files) if cache is None else cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        return to_model_inputs(features, names), tf.reshape(features[label], [-1, 1])

    ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if rows is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass(frozen=True)
class Head:
    """What a task type trains: output layer, loss, metrics and the early-stopping monitor.

    ``headline`` is the Keras metric that says how good the model is (plotted beside the loss,
    reported as ``eval_<headline>``); ``monitor``/``mode`` drive early stopping.
    """

    task: str
    headline: str
    monitor: str
    mode: str


HEADS = {
    # AUC is what the binary gates judge; it is also smoother than accuracy epoch to epoch.
    "binary": Head("binary", headline="auc", monitor="val_auc", mode="max"),
    # Log loss (a proper score) moves with every probability; accuracy plateaus in steps.
    "multiclass": Head("multiclass", headline="accuracy", monitor="val_loss", mode="min"),
    "regression": Head("regression", headline="rmse", monitor="val_loss", mode="min"),
}


def head(task: str) -> Head:
    if task not in HEADS:
        raise ValueError(f"unknown task {task!r} (accepted: {', '.join(HEADS)})")
    return HEADS[task]


def read_labels(pattern: str, tft_output: Any, label: str):
    """The transformed label of every row of one split, as a float64 numpy array."""
    import numpy as np
    import tensorflow as tf

    spec = {label: tft_output.transformed_feature_spec()[label]}
    files = sorted(tf.io.gfile.glob(pattern))
    ds = tf.data.TFRecordDataset(files).batch(65536).map(lambda x: tf.io.parse_example(x, spec))
    parts = [np.asarray(b[label]).reshape(-1) for b in ds]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def label_stats(values: Any, task: str, n_classes: int | None) -> dict[str, Any]:
    """Count, mean, std and range of the train split's labels (see :func:`read_labels`).

    Classification labels must be integers in ``[0, n_classes)``; anything else means the
    transform's label encoding does not match ``cfg.label`` (e.g. three classes squeezed into a
    binary config), and training on it would be silently wrong, so it raises.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("the train split holds no rows; nothing to train on")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the label holds {int((~np.isfinite(values)).sum())} non-finite values")
    stats = {"rows": int(values.size), "mean": float(values.mean()), "std": float(values.std()),
             "min": float(values.min()), "max": float(values.max())}
    if task != "regression":
        k = 2 if task == "binary" else int(n_classes or 0)
        wrong = np.unique(values[(values < 0) | (values >= k) | (values != np.round(values))])
        bad = [int(v) if v == round(v) else float(v) for v in wrong.tolist()]
        if bad:
            raise ValueError(
                f"task {task} expects the transformed label to be a class index in [0, {k - 1}], "
                f"found {bad[:10]}; the transform module's label encoding does not match "
                "cfg.label.classes (use transforms.lib.encode_label)")
        stats["class_counts"] = np.bincount(values.astype(np.int64), minlength=k).tolist()
    return stats


def build_model(numeric: list[str], categorical: dict[str, int], hp: Any, task: str = "binary",
                n_classes: int | None = None, target: dict[str, float] | None = None,
                steps_per_execution: int = 1):
    """Wide and deep: a linear part over one-hot/embedded ids plus a ReLU tower; head per task.

    Args:
        numeric: float input names; categorical: int input name -> number of ids.
        hp: ``cfg.model`` (hidden_units, learning_rate).
        task: binary (one sigmoid unit, binary cross-entropy, AUC and accuracy), multiclass
            (``n_classes`` softmax units, sparse categorical cross-entropy, accuracy and top-2
            accuracy) or regression (one linear unit, MSE, RMSE and MAE).
        target: regression only, ``{"mean", "std"}`` of the train split's label. The network
            predicts a z-score that a fixed ``target_scale`` layer maps back to the label's units
            (``z * std + mean``), so training is well conditioned whatever the target's scale and
            the model (and ``serving_default``) outputs the original units. Loss and metrics are
            in the original units.
        steps_per_execution: batches per call of the compiled train/test function (more than
            one needs datasets of known cardinality, see :func:`make_dataset`).
    """
    import tf_keras as keras

    head(task)
    units = {"binary": 1, "multiclass": n_classes, "regression": 1}[task]
    if task == "multiclass" and (not n_classes or n_classes < 3):
        raise ValueError(f"task multiclass needs n_classes >= 3, got {n_classes}")
    inputs, dense_parts, wide_parts = {}, [], []
    for name in numeric:
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="float32")
        dense_parts.append(inputs[name])
    for name, size in categorical.items():
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="int64")
        if size <= ONE_HOT_MAX:
            encoded = keras.layers.CategoryEncoding(size, output_mode="one_hot",
                                                    name=f"onehot_{name}")(inputs[name])
            wide_parts.append(encoded)
        else:
            dim = min(EMBED_DIM_MAX, max(4, round(size ** 0.25 * 2)))
            embedded = keras.layers.Embedding(size, dim, name=f"embed_{name}")(inputs[name])
            encoded = keras.layers.Flatten(name=f"flat_{name}")(embedded)
            wide_parts.append(keras.layers.CategoryEncoding(
                size, output_mode="one_hot", name=f"onehot_{name}")(inputs[name]))
        dense_parts.append(encoded)
    if not inputs:
        raise ValueError("the transform outputs no model input besides the label")
    deep = (keras.layers.Concatenate(name="deep_inputs")(dense_parts) if len(dense_parts) > 1
            else dense_parts[0])
    for i, n_units in enumerate(hp.hidden_units):
        deep = keras.layers.Dense(n_units, activation="relu", name=f"hidden_{i}")(deep)
    wide_in = wide_parts + [inputs[n] for n in numeric]
    wide = keras.layers.Concatenate(name="wide_inputs")(wide_in) if len(wide_in) > 1 else wide_in[0]
    # The head's kernels have `units` columns: a warm start from a model of another task or class
    # count finds other shapes there and keeps them fresh (warm_start reports their names).
    logit = keras.layers.Add(name="logit")([
        keras.layers.Dense(units, name="deep_logit")(deep),
        keras.layers.Dense(units, name="wide")(wide),
    ])
    optimizer = keras.optimizers.Adam(learning_rate=hp.learning_rate)
    if task == "binary":
        output = keras.layers.Activation("sigmoid", name="probability")(logit)
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
    elif task == "multiclass":
        output = keras.layers.Activation("softmax", name="probabilities")(logit)
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                   keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2_accuracy")]
    else:
        target = target or {"mean": 0.0, "std": 1.0}
        std = target["std"] if target["std"] > 0 else 1.0
        output = keras.layers.Rescaling(scale=std, offset=target["mean"],
                                        name="target_scale")(logit)
        loss = keras.losses.MeanSquaredError()
        metrics = [keras.metrics.RootMeanSquaredError(name="rmse"),
                   keras.metrics.MeanAbsoluteError(name="mae")]
    model = keras.Model(inputs=inputs, outputs=output, name="wide_and_deep")
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                  steps_per_execution=steps_per_execution)
    return model


def warm_start(model: Any, saved_model_uri: str) -> dict[str, Any]:
    """Copies variables of a SavedModel into ``model`` where name and shape match.

    Args:
        model: the freshly built Keras model.
        saved_model_uri: a SavedModel written by this step (the production model, typically).

    Returns:
        Counts of variables ``copied`` and ``skipped`` (absent or of another shape, e.g. after
        a vocabulary grew, or the head of another task or class count), and the names of the
        skipped ones (``fresh``).
    """
    import tf_keras as keras

    try:
        loaded = keras.models.load_model(saved_model_uri, compile=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot warm start from {saved_model_uri}: not a Keras SavedModel "
                         f"({exc}); pass the model_uri of an earlier train step") from exc
    source = {v.name: v for v in loaded.weights}
    copied, fresh = 0, []
    for var in model.weights:
        match = source.get(var.name)
        if match is not None and tuple(match.shape) == tuple(var.shape):
            var.assign(match)
            copied += 1
        else:
            fresh.append(var.name)
    if fresh:
        log.warning("warm start from %s: %d variables copied, %d kept fresh (absent or of another "
                    "shape): %s", saved_model_uri, copied, len(fresh), ", ".join(fresh))
    else:
        log.info("warm start from %s: %d variables copied", saved_model_uri, copied)
    return {"copied": copied, "skipped": len(fresh), "fresh": fresh}
