"""The Keras model and its tf.data input, built from the transformed schema alone.

Called by ``pipelines.train``. Nothing here knows the Adult columns: float features are fed as
they are, integer features with a domain (vocabulary ids, buckets, hashed crosses) are one-hot
encoded when small and embedded when large, and the label is ``<label column>_xf``. A new use
case therefore needs only its own ``transforms/<pipeline>.py``.

Layer names are fixed (``hidden_<i>``, ``embed_<feature>``, ``wide``, ``probability``) so that a
warm start can match variables by name and shape.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

ONE_HOT_MAX = 64  # integer features with at most this many values are one-hot, larger embedded
EMBED_DIM_MAX = 16


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


def make_dataset(pattern: str, tft_output: Any, label: str, batch_size: int, *,
                 shuffle: bool, seed: int, names: list[str]):
    """A tf.data pipeline of (features, label) batches from transformed TFRecords."""
    import tensorflow as tf

    spec = tft_output.transformed_feature_spec()
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed data matches {pattern}; run the transform step")
    ds = tf.data.TFRecordDataset(files).cache()
    if shuffle:
        ds = ds.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x: tf.io.parse_example(x, spec))
    ds = ds.map(lambda f: (to_model_inputs(f, names), tf.reshape(f[label], [-1, 1])))
    return ds.prefetch(tf.data.AUTOTUNE)


def build_model(numeric: list[str], categorical: dict[str, int], hp: Any):
    """Wide and deep: a linear part over one-hot/embedded ids plus a ReLU tower, one sigmoid."""
    import tf_keras as keras

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
    deep = keras.layers.Concatenate(name="deep_inputs")(dense_parts)
    for i, units in enumerate(hp.hidden_units):
        deep = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(deep)
    wide = keras.layers.Concatenate(name="wide_inputs")(wide_parts + [inputs[n] for n in numeric])
    logit = keras.layers.Add(name="logit")([
        keras.layers.Dense(1, name="deep_logit")(deep),
        keras.layers.Dense(1, name="wide")(wide),
    ])
    output = keras.layers.Activation("sigmoid", name="probability")(logit)
    model = keras.Model(inputs=inputs, outputs=output, name="wide_and_deep")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=hp.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    return model


def warm_start(model: Any, saved_model_uri: str) -> dict[str, int]:
    """Copies variables of a SavedModel into ``model`` where name and shape match.

    Args:
        model: the freshly built Keras model.
        saved_model_uri: a SavedModel written by this step (the production model, typically).

    Returns:
        Counts of variables ``copied`` and ``skipped`` (absent or of another shape, e.g. after
        a vocabulary grew).
    """
    import tf_keras as keras

    try:
        loaded = keras.models.load_model(saved_model_uri, compile=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot warm start from {saved_model_uri}: not a Keras SavedModel "
                         f"({exc}); pass the model_uri of an earlier train step") from exc
    source = {v.name: v for v in loaded.weights}
    copied = skipped = 0
    for var in model.weights:
        match = source.get(var.name)
        if match is not None and tuple(match.shape) == tuple(var.shape):
            var.assign(match)
            copied += 1
        else:
            skipped += 1
    log.info("warm start from %s: %d variables copied, %d kept fresh", saved_model_uri, copied,
             skipped)
    return {"copied": copied, "skipped": skipped}
