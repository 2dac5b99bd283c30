"""Unit tests of transforms/lib.py (eager TensorFlow, no Beam): label encoding per task, missing values."""

from __future__ import annotations

import pytest

from pipelines.config import parse_config
from transforms.lib import UNKNOWN_CLASS, encode_label, fill_missing, is_missing


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


def cfg_with_label(adult_cfg, label: dict, column_type: str | None = None):
    raw = adult_cfg.model_dump(mode="json")
    raw["label"] = label
    raw["evaluation"] = {}
    raw["monitoring"] = {}  # Adult's live gates are binary ones
    if column_type:
        for col in raw["columns"]:
            if col["name"] == label["column"]:
                col["type"] = column_type
    return parse_config(raw)


def test_binary_string_label(tf, adult_cfg):
    out = encode_label(tf.constant([">50K", "<=50K", " >50K ", "other"]), adult_cfg)
    assert out.dtype == tf.int64
    assert out.numpy().tolist() == [1, 0, 1, UNKNOWN_CLASS]


def test_binary_int_label_compares_ints(tf, adult_cfg):
    cfg = cfg_with_label(adult_cfg, {"column": "income", "task": "binary", "classes": [0, 1],
                                     "positive_class": 1}, "int")
    assert encode_label(tf.constant([1, 0, 0, 1, 2], tf.int64), cfg).numpy().tolist() == [
        1, 0, 0, 1, UNKNOWN_CLASS]
    flipped = cfg_with_label(adult_cfg, {"column": "income", "task": "binary", "classes": [0, 1],
                                         "positive_class": 0}, "int")
    assert encode_label(tf.constant([[1], [0]], tf.int64), flipped).numpy().tolist() == [0, 1]


def test_multiclass_index_in_config_order(tf, adult_cfg):
    cfg = cfg_with_label(adult_cfg, {"column": "income", "task": "multiclass",
                                     "classes": ["b", "c", "a"]})
    out = encode_label(tf.constant(["a", "b", "c", "zz", " c"]), cfg)
    assert out.dtype == tf.int64 and out.numpy().tolist() == [2, 0, 1, UNKNOWN_CLASS, 1]
    cfg_int = cfg_with_label(adult_cfg, {"column": "income", "task": "multiclass",
                                         "classes": [3, 1, 2]}, "int")
    assert encode_label(tf.constant([1, 2, 3, 4], tf.int64), cfg_int).numpy().tolist() == [
        1, 2, 0, UNKNOWN_CLASS]


def test_regression_is_float32(tf, adult_cfg):
    cfg = cfg_with_label(adult_cfg, {"column": "income", "task": "regression"}, "float")
    out = encode_label(tf.constant([1.5, -2.0], tf.float32), cfg)
    assert out.dtype == tf.float32 and out.numpy().tolist() == [1.5, -2.0]
    cfg_int = cfg_with_label(adult_cfg, {"column": "income", "task": "regression"}, "int")
    assert encode_label(tf.constant([[3]], tf.int64), cfg_int).numpy().tolist() == [3.0]


def test_fill_missing_and_is_missing(tf):
    sparse = tf.SparseTensor(indices=[[0, 0], [2, 0]], values=[1.5, 2.5], dense_shape=[3, 1])
    assert fill_missing(sparse, 0.0).numpy().tolist() == [1.5, 0.0, 2.5]
    assert is_missing(sparse).numpy().tolist() == [0.0, 1.0, 0.0]
    strings = tf.SparseTensor(indices=[[1, 0]], values=["x"], dense_shape=[2, 1])
    assert [v.decode() for v in fill_missing(strings, "__missing__").numpy()] == ["__missing__", "x"]
    dense = tf.constant([[4], [5]], tf.int64)
    assert fill_missing(dense, 0).numpy().tolist() == [4, 5]
    assert is_missing(dense).numpy().tolist() == [0.0, 0.0]
