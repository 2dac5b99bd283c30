"""COMPAS features, as a TensorFlow Transform ``preprocessing_fn`` (configs/compas.yaml).

Model inputs are the config's feature columns only: sex, age, the juvenile and prior counts, the
days between arrest and screening (nullable: missing for 4.3% of people), the charge degree and
the charge description (nullable). Race, COMPAS's decile score and score text are ``excluded``
columns: in the snapshot for the audit, never read here. Every output is ``<input>_xf``; the
label ``two_year_recid_xf`` is 1 for the positive class of the config (``transforms.lib``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from transforms.lib import categorical_ids, encode_label, is_missing, transformed_name, z_score

# Numeric columns fed as z-scores.
NUMERIC_FEATURES = ["age"]
# Counts with a long tail: log1p, then z-score.
COUNT_FEATURES = ["juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count"]
# Nullable numeric columns: z-score (missing at the mean) plus a missing indicator.
NULLABLE_NUMERIC_FEATURES = ["days_b_screening_arrest"]
# Numeric columns also bucketized at train-split quantiles (steps in the risk curve).
BUCKET_FEATURES = {"age": 10, "priors_count": 8}
# String columns mapped to vocabulary ids (missing -> a reserved id, unseen -> OOV).
CATEGORICAL_FEATURES = ["sex", "c_charge_degree", "c_charge_desc"]


def make_preprocessing_fn(cfg: Any) -> Callable[[dict[str, Any]], dict[str, tf.Tensor]]:
    """Builds the preprocessing_fn for ``cfg`` (label column and classes from the config)."""
    label_column = cfg.label.column

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, tf.Tensor]:
        outputs: dict[str, tf.Tensor] = {}
        for name in NUMERIC_FEATURES:
            outputs[transformed_name(name)] = z_score(inputs[name])
        for name in COUNT_FEATURES:
            x = tf.math.log1p(tf.maximum(tf.cast(inputs[name], tf.float64), 0.0))
            outputs[transformed_name(name)] = z_score(x)
        for name in NULLABLE_NUMERIC_FEATURES:
            outputs[transformed_name(name)] = z_score(inputs[name])
            outputs[transformed_name(f"{name}_missing")] = is_missing(inputs[name])
        for name, num_buckets in BUCKET_FEATURES.items():
            outputs[transformed_name(f"{name}_bucket")] = tft.bucketize(
                tf.cast(inputs[name], tf.float32), num_buckets, name=f"bucketize_{name}")
        for name in CATEGORICAL_FEATURES:
            outputs[transformed_name(name)] = categorical_ids(inputs[name], name)
        outputs[transformed_name(label_column)] = encode_label(inputs[label_column], cfg)
        return outputs

    return preprocessing_fn
