"""Helpers shared by every use case's ``preprocessing_fn`` (transforms/<name>.py).

Called inside TensorFlow Transform preprocessing_fns, so everything here is plain TensorFlow that
traces into the transform graph (and from there into the SavedModel's signatures):

- :func:`encode_label`: the label output of the transform contract, per task type (binary: 1 for
  ``positive_class`` else 0; multiclass: the index in ``cfg.label.classes``; regression: float32),
  for string and integer label columns alike. A value outside the classes becomes ``-1``, never a
  real class: ingest's validation already rejects such rows, and -1 is a second line that a
  loss, a metric or a test notices (it is no valid class index).
- :func:`fill_missing`: a nullable column (a SparseTensor, absent where the cell was missing) or a
  dense one, as a dense ``[batch]`` tensor with ``default`` in the missing places (TFX taxi's
  ``_fill_in_missing``).
- :func:`is_missing`: 1.0 where a nullable column's cell was missing, else 0.0, so a model can
  learn from the fact of missingness rather than from the filled-in default alone.
- :func:`z_score` and :func:`categorical_ids`: the usual numeric and string features for a column
  that may be nullable (missing numbers at the mean, missing strings a reserved token).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

# Suffix of every transformed feature name.
XF_SUFFIX = "_xf"
# The label value of a class that is not in cfg.label.classes.
UNKNOWN_CLASS = -1
# The token missing (and blank) strings are mapped to before the vocabulary.
MISSING_TOKEN = "__missing__"


def transformed_name(name: str) -> str:
    """The output name of a transformed feature: ``age`` -> ``age_xf``."""
    return f"{name}{XF_SUFFIX}"


def _dense_1d(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """A dense ``[batch]`` view of a ``[batch]`` or ``[batch, 1]`` tensor (sparse: see fill_missing)."""
    if isinstance(x, tf.SparseTensor):
        raise TypeError("a SparseTensor needs fill_missing(x, default) first")
    return tf.reshape(x, [-1]) if x.shape.rank != 1 else x


def fill_missing(x: tf.Tensor | tf.SparseTensor, default: Any) -> tf.Tensor:
    """Dense ``[batch]`` tensor of ``x`` with ``default`` where a (sparse) value is missing.

    Args:
        x: a SparseTensor ``[batch, 1]`` (a nullable column: no value where the cell was missing)
            or a dense tensor ``[batch]`` / ``[batch, 1]`` (returned reshaped to ``[batch]``).
        default: the value of a missing cell, castable to ``x.dtype`` (e.g. ``""`` or ``0``).
    """
    if not isinstance(x, tf.SparseTensor):
        return _dense_1d(x)
    dense = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
        default_value=tf.constant(default, dtype=x.dtype))
    return tf.squeeze(dense, axis=1)


def is_missing(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """float32 ``[batch]``: 1.0 where a nullable column had no value, else 0.0 (dense: all 0)."""
    if not isinstance(x, tf.SparseTensor):
        return tf.zeros_like(_dense_1d(x), dtype=tf.float32)
    present = tf.sparse.to_dense(tf.SparseTensor(
        x.indices, tf.ones_like(x.values, dtype=tf.float32), [x.dense_shape[0], 1]))
    return 1.0 - tf.squeeze(present, axis=1)


def class_index(x: tf.Tensor, classes: list[Any]) -> tf.Tensor:
    """int64 ``[batch]``: the position of each value in ``classes``, ``UNKNOWN_CLASS`` if absent.

    String values are compared after stripping surrounding spaces; integer values as integers
    (an int column is never compared with the string form of a class).
    """
    x = _dense_1d(x)
    if x.dtype == tf.string:
        x = tf.strings.strip(x)
        table = tf.constant([str(c) for c in classes], dtype=tf.string)
    else:
        if any(isinstance(c, str) for c in classes):
            raise TypeError(f"classes {classes} are strings but the label column is {x.dtype.name}")
        x = tf.cast(x, tf.int64)
        table = tf.constant([int(c) for c in classes], dtype=tf.int64)
    matches = tf.equal(tf.expand_dims(x, 1), tf.expand_dims(table, 0))  # [batch, K]
    found = tf.reduce_any(matches, axis=1)
    index = tf.argmax(tf.cast(matches, tf.int64), axis=1, output_type=tf.int64)
    return tf.where(found, index, tf.constant(UNKNOWN_CLASS, tf.int64))


def encode_label(x: tf.Tensor, cfg: Any) -> tf.Tensor:
    """The label output ``<label column>_xf`` of the transform contract, for ``cfg.label.task``.

    Args:
        x: the raw label column, dense ``[batch]`` (string or integer; float for regression).
        cfg: the validated ``pipelines.config.PipelineConfig`` (``label`` is read).

    Returns:
        binary: int64, 1 for ``positive_class``, 0 for the other class, -1 for any other value;
        multiclass: int64 index into ``classes`` (0..K-1), -1 for a value outside them;
        regression: float32 target value.
    """
    label = cfg.label
    if label.task == "regression":
        x = _dense_1d(x)
        if x.dtype == tf.string:
            x = tf.strings.to_number(tf.strings.strip(x), out_type=tf.float32)
        return tf.cast(x, tf.float32)
    if label.task == "binary":
        index = class_index(x, [label.negative_class, label.positive_class])
        return index  # negative -> 0, positive -> 1, unknown -> -1
    if label.task == "multiclass":
        return class_index(x, list(label.classes))
    raise ValueError(f"unknown task {label.task!r}")


def z_score(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """float32 ``[batch]`` z-score over the train split; a missing value (sparse) is 0, the mean.

    Sums are accumulated in float64 so the result does not depend on the order Beam combines them.
    """
    if not isinstance(x, tf.SparseTensor):
        return tf.cast(tft.scale_to_z_score(tf.cast(_dense_1d(x), tf.float64)), tf.float32)
    values = tf.cast(x.values, tf.float64)
    mean, var = tft.mean(values), tft.var(values)
    dense = fill_missing(tf.SparseTensor(x.indices, values, x.dense_shape), 0.0)
    z = tf.where(var > 0, (dense - mean) / tf.sqrt(tf.maximum(var, 1e-300)), dense - mean)
    return tf.cast(tf.where(is_missing(x) > 0, tf.zeros_like(z), z), tf.float32)


def clean_string(x: tf.Tensor | tf.SparseTensor, missing_marker: str = "") -> tf.Tensor:
    """Dense ``[batch]`` strings, stripped; missing, blank and ``missing_marker`` -> MISSING_TOKEN."""
    x = tf.strings.strip(fill_missing(x, ""))
    missing = tf.logical_or(tf.equal(x, ""), tf.equal(x, missing_marker or ""))
    return tf.where(missing, tf.constant(MISSING_TOKEN), x)


def categorical_ids(x: tf.Tensor | tf.SparseTensor, name: str, *, missing_marker: str = "",
                    num_oov_buckets: int = 1, frequency_threshold: int | None = None) -> tf.Tensor:
    """int64 ``[batch]`` vocabulary ids of a string (or integer) column, nullable or not.

    Missing values get the reserved id 0 (MISSING_TOKEN), whether or not the train split held
    any; values unseen in training land in the OOV buckets. The ids carry an int domain in the
    schema (one-hot or embedded by the model).
    """
    if x.dtype != tf.string:
        x = (tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
             if isinstance(x, tf.SparseTensor) else tf.strings.as_string(x))
    cleaned = clean_string(x, missing_marker)
    return tft.compute_and_apply_vocabulary(
        cleaned, num_oov_buckets=num_oov_buckets, frequency_threshold=frequency_threshold,
        reserved_tokens=[MISSING_TOKEN], vocab_filename=f"vocab_{name}", name=f"vocab_{name}")
