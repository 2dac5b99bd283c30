"""Adult features: the single definition, as a TensorFlow Transform ``preprocessing_fn``.

Called by ``pipelines.transform`` (Beam analyzes the train split and transforms both splits) and,
through the saved transform graph, by the SavedModel's ``serving_default`` and
``transform_features`` signatures. Nothing else defines features: there is no second copy.

``configs/adult.yaml`` names this module (``transform_module: transforms.adult``); the pipeline calls
:func:`make_preprocessing_fn` with the validated config, so the label column, its positive class
and the missing-value marker come from the config. Every output is named ``<input>_xf`` (a cross
is ``<a>_x_<b>_xf``); the label becomes ``<label column>_xf`` (1 for the positive class, 0 for
the other, -1 for a value outside the classes: ``transforms.lib.encode_label``).

Missing values (the ``?`` marker) are handled on purpose: in Adult they are informative (people
with no ``occupation`` are mostly out of the labour force), so they are mapped to the reserved
token ``MISSING_TOKEN``; ``<column>=__missing__`` is a reserved vocabulary entry (id = the
column's position in CATEGORICAL_FEATURES), whether or not the training data held any. Unseen
categories at serving time land in the OOV buckets, never on a real category.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import schema_inference

from transforms.lib import encode_label

# Numeric columns fed to the model as z-scores (mean 0, variance 1 on the train split).
NUMERIC_FEATURES = ["age", "fnlwgt", "education_num", "hours_per_week"]
# Heavy-tailed numeric columns: log1p first, then z-score, so a few huge values do not dominate.
LOG_NUMERIC_FEATURES = ["capital_gain", "capital_loss"]
# Numeric columns also bucketized at train-split quantiles (column -> buckets): lets the
# model learn steps and bumps; golden AUC 0.907 without the buckets, 0.925 with them. Not
# fnlwgt: a sampling weight must move predictions smoothly (tests/model invariance test).
BUCKET_FEATURES = {"age": 30, "hours_per_week": 10, "education_num": 16}
# Mostly-zero columns bucketized at quantiles of their non-zero values (0 keeps bucket 0).
NONZERO_BUCKET_FEATURES = {"capital_gain": 100, "capital_loss": 50}
# String columns mapped to ids of one shared vocabulary (unseen values -> an OOV bucket).
CATEGORICAL_FEATURES = [
    "workclass", "education", "marital_status", "occupation",
    "relationship", "race", "sex", "native_country",
]
# Pairs of string columns crossed and hashed into CROSS_HASH_BUCKETS ids.
FEATURE_CROSSES = [("education", "occupation"), ("marital_status", "relationship")]
# Number of hash buckets of each feature cross.
CROSS_HASH_BUCKETS = 1000
# Out-of-vocabulary buckets of the vocabulary (categories unseen in training).
OOV_BUCKETS = 2
# The value missing values are mapped to; "<column>=__missing__" is reserved at a fixed low id.
MISSING_TOKEN = "__missing__"
# File name of the shared categorical vocabulary in the transform graph's assets.
VOCABULARY_FILE = "categories"
# Suffix of every transformed feature name.
XF_SUFFIX = "_xf"


def transformed_name(name: str) -> str:
    """The output name of a transformed feature: ``age`` -> ``age_xf``."""
    return f"{name}{XF_SUFFIX}"


def _clean_string(x: tf.Tensor, missing_marker: str) -> tf.Tensor:
    """Strips spaces and maps the missing marker (and empty strings) to MISSING_TOKEN."""
    x = tf.strings.strip(x)
    missing = tf.logical_or(tf.equal(x, missing_marker), tf.equal(x, ""))
    return tf.where(missing, tf.constant(MISSING_TOKEN), x)


def _strip_uci_period(x: tf.Tensor) -> tf.Tensor:
    """Removes spaces and UCI's trailing period of the test labels (``>50K.`` -> ``>50K``)."""
    return tf.strings.regex_replace(tf.strings.strip(x), r"\.$", "")


def make_preprocessing_fn(cfg: Any) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """Builds the preprocessing_fn for a pipeline config (label and missing marker from ``cfg``).

    Args:
        cfg: the validated ``pipelines.config.PipelineConfig`` (only ``label`` and
            ``source.missing_marker`` are read).

    Returns:
        A TFT preprocessing_fn: dict of raw dense tensors ``[batch]`` in, dict of transformed
        dense tensors ``[batch]`` out (float32 z-scores, int64 ids and bucket indices).
    """
    label_column = cfg.label.column
    missing_marker = cfg.source.missing_marker

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs: dict[str, tf.Tensor] = {}
        # Means and variances are accumulated in float64: float32 sums of fnlwgt (~1e5) depend on
        # the order Beam combines them in, and the output must not depend on the runner.
        for name in NUMERIC_FEATURES:
            outputs[transformed_name(name)] = tf.cast(tft.scale_to_z_score(
                tf.cast(inputs[name], tf.float64)), tf.float32)
        for name in LOG_NUMERIC_FEATURES:
            outputs[transformed_name(name)] = tf.cast(tft.scale_to_z_score(
                tf.math.log1p(tf.maximum(tf.cast(inputs[name], tf.float64), 0.0))), tf.float32)
        for name, num_buckets in BUCKET_FEATURES.items():
            outputs[transformed_name(f"{name}_bucket")] = tft.bucketize(
                tf.cast(inputs[name], tf.float32), num_buckets, name=f"bucketize_{name}")
        for name, num_buckets in NONZERO_BUCKET_FEATURES.items():
            x = tf.cast(inputs[name], tf.float32)
            # A tiny weight keeps the analyzer defined when no value is non-zero.
            weights = tf.where(x > 0, 1.0, 1e-6)
            boundaries = tft.quantiles(x, num_buckets, epsilon=0.01, weights=weights,
                                       name=f"quantiles_{name}")
            outputs[transformed_name(f"{name}_bucket")] = tft.apply_buckets(x, boundaries)
        cleaned = {name: _clean_string(inputs[name], missing_marker)
                   for name in CATEGORICAL_FEATURES}
        # One vocabulary of "<column>=<value>" tokens for all categoricals: one analyzer instead
        # of eight (each adds Beam stages, the transform's main fixed cost); ids stay distinct.
        tokens = {name: tf.strings.join([f"{name}=", cleaned[name]])
                  for name in CATEGORICAL_FEATURES}
        vocabulary = tft.vocabulary(
            tf.concat(list(tokens.values()), axis=0), vocab_filename=VOCABULARY_FILE,
            reserved_tokens=[f"{name}={MISSING_TOKEN}" for name in CATEGORICAL_FEATURES])
        for name in CATEGORICAL_FEATURES:
            outputs[transformed_name(name)] = tft.apply_vocabulary(
                tokens[name], vocabulary, num_oov_buckets=OOV_BUCKETS)
        for a, b in FEATURE_CROSSES:
            crossed = tft.hash_strings(
                tf.strings.join([cleaned[a], cleaned[b]], separator="|"), CROSS_HASH_BUCKETS)
            schema_inference.set_tensor_schema_override(
                crossed, tf.constant(0, tf.int64), tf.constant(CROSS_HASH_BUCKETS - 1, tf.int64))
            outputs[transformed_name(f"{a}_x_{b}")] = crossed
        # 1 for the positive class, 0 for the other, -1 for a value outside label.classes.
        outputs[transformed_name(label_column)] = encode_label(
            _strip_uci_period(inputs[label_column]), cfg)
        return outputs

    return preprocessing_fn
