"""Seattle weather features, as a TensorFlow Transform ``preprocessing_fn`` (configs/seattle_weather.yaml).

The target ``temp_max_xf`` is the day's maximum temperature (float32). The date enters as the
season only: its day of year on the circle (sine and cosine, so 31 December sits next to
1 January) and its month as a categorical id; the year is not used (the model must carry over
to days it has not seen). Precipitation is log1p then z-scored (mostly 0, long tail), the
minimum temperature and the wind are z-scored, the weather type is a vocabulary id.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from tensorflow_transform import schema_inference

from transforms.lib import categorical_ids, encode_label, transformed_name, z_score

# Numeric columns fed as z-scores.
NUMERIC_FEATURES = ["temp_min", "wind"]
# Mostly-zero, long-tailed columns: log1p, then z-score.
LOG_NUMERIC_FEATURES = ["precipitation"]
# String columns mapped to vocabulary ids.
CATEGORICAL_FEATURES = ["weather"]
# The date column, "YYYY/MM/DD" (or "YYYY-MM-DD").
DATE_FEATURE = "date"
# Cumulative days before each month (non-leap year).
_DAYS_BEFORE_MONTH = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]


def season(date: tf.Tensor) -> dict[str, tf.Tensor]:
    """Day of year on the circle (float32 sin/cos) and month index 0..11 (int64) of dates."""
    date = tf.strings.strip(date)
    month = tf.strings.to_number(tf.strings.substr(date, 5, 2), out_type=tf.int32)
    day = tf.strings.to_number(tf.strings.substr(date, 8, 2), out_type=tf.int32)
    month0 = tf.clip_by_value(month - 1, 0, 11)
    day_of_year = tf.cast(tf.gather(_DAYS_BEFORE_MONTH, month0) + day - 1, tf.float32)
    angle = 2.0 * math.pi * day_of_year / 365.25
    return {"sin": tf.sin(angle), "cos": tf.cos(angle), "month": tf.cast(month0, tf.int64)}


def make_preprocessing_fn(cfg: Any) -> Callable[[dict[str, Any]], dict[str, tf.Tensor]]:
    """Builds the preprocessing_fn for ``cfg`` (the label column from the config)."""
    label_column = cfg.label.column

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, tf.Tensor]:
        outputs: dict[str, tf.Tensor] = {}
        for name in NUMERIC_FEATURES:
            outputs[transformed_name(name)] = z_score(inputs[name])
        for name in LOG_NUMERIC_FEATURES:
            x = tf.math.log1p(tf.maximum(tf.cast(inputs[name], tf.float64), 0.0))
            outputs[transformed_name(name)] = z_score(x)
        for name in CATEGORICAL_FEATURES:
            outputs[transformed_name(name)] = categorical_ids(inputs[name], name)
        parts = season(tf.reshape(inputs[DATE_FEATURE], [-1]))
        outputs[transformed_name("day_of_year_sin")] = parts["sin"]
        outputs[transformed_name("day_of_year_cos")] = parts["cos"]
        month = parts["month"]
        schema_inference.set_tensor_schema_override(
            month, tf.constant(0, tf.int64), tf.constant(11, tf.int64))
        outputs[transformed_name("month")] = month
        outputs[transformed_name(label_column)] = encode_label(inputs[label_column], cfg)
        return outputs

    return preprocessing_fn
