"""Palmer penguins features, as a TensorFlow Transform ``preprocessing_fn`` (configs/penguins.yaml).

The four body measurements are nullable (two birds were not measured): each becomes a z-score,
missing at the mean, plus one indicator of a missing measurement. Island and sex (nullable: 11
birds unsexed) become vocabulary ids, a missing sex its own reserved id. ``year`` is an excluded
column (slices only). The label ``species_xf`` is the class index in ``label.classes`` order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from transforms.lib import categorical_ids, encode_label, is_missing, transformed_name, z_score

# Nullable numeric columns fed as z-scores (missing at the mean).
NUMERIC_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
# String columns mapped to vocabulary ids.
CATEGORICAL_FEATURES = ["island", "sex"]


def make_preprocessing_fn(cfg: Any) -> Callable[[dict[str, Any]], dict[str, tf.Tensor]]:
    """Builds the preprocessing_fn for ``cfg`` (label column and classes from the config)."""
    label_column = cfg.label.column

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, tf.Tensor]:
        outputs: dict[str, tf.Tensor] = {}
        for name in NUMERIC_FEATURES:
            outputs[transformed_name(name)] = z_score(inputs[name])
        # The measurements are missing together: one indicator of "not measured".
        outputs[transformed_name("measurements_missing")] = is_missing(inputs[NUMERIC_FEATURES[0]])
        for name in CATEGORICAL_FEATURES:
            outputs[transformed_name(name)] = categorical_ids(inputs[name], name)
        outputs[transformed_name(label_column)] = encode_label(inputs[label_column], cfg)
        return outputs

    return preprocessing_fn
