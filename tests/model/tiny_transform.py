"""A small transform over a few Adult columns, for the model tests of every task type.

Not a use case: tests/model/test_tasks.py builds configs from Adult with another label (income:
binary, relationship: multiclass, hours_per_week: regression) and points ``transform_module`` here.
It reads a fixed list of columns, minus the label, whatever their role: a config that marks one
of them ``excluded`` therefore makes the transform read an excluded column (the export test
relies on that). The label is encoded by ``transforms.lib.encode_label`` when that exists.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

NUMERIC = ["age", "education_num", "hours_per_week"]
CATEGORICAL = ["sex", "marital_status", "occupation", "workclass", "relationship"]


def _encode_label(x: tf.Tensor, cfg: Any) -> tf.Tensor:
    """The transform contract's label: binary 0/1, multiclass index in classes, regression float."""
    try:
        from transforms.lib import encode_label
    except ImportError:
        encode_label = None
    if encode_label is not None:
        return encode_label(x, cfg)
    if cfg.label.task == "regression":
        return tf.cast(x, tf.float32)
    if x.dtype == tf.string:
        x = tf.strings.strip(x)
        classes = tf.constant([str(c) for c in cfg.label.classes])
    else:
        classes = tf.constant(cfg.label.classes, dtype=x.dtype)
    if cfg.label.task == "binary":
        positive = tf.cast(classes[cfg.label.classes.index(cfg.label.positive_class)], x.dtype)
        return tf.cast(tf.equal(x, positive), tf.int64)
    hits = tf.cast(tf.equal(tf.expand_dims(x, 1), tf.expand_dims(classes, 0)), tf.int64)
    return tf.argmax(hits, axis=1, output_type=tf.int64)


def make_preprocessing_fn(cfg: Any):
    label = cfg.label.column

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {}
        for name in NUMERIC:
            if name != label:
                out[f"{name}_xf"] = tf.cast(
                    tft.scale_to_z_score(tf.cast(inputs[name], tf.float64)), tf.float32)
        for name in CATEGORICAL:
            if name != label:
                out[f"{name}_xf"] = tft.compute_and_apply_vocabulary(
                    tf.strings.strip(inputs[name]), num_oov_buckets=1, vocab_filename=name)
        out[f"{label}_xf"] = _encode_label(inputs[label], cfg)
        return out

    return preprocessing_fn
