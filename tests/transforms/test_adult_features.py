"""Unit tests of transforms/adult.py's own logic (no Beam): missing marker, label, names."""

from __future__ import annotations

import pytest

from transforms import adult


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


def test_missing_marker_and_blank_map_to_the_reserved_token(tf):
    out = adult._clean_string(tf.constant(["?", " ? ", "", "Private", " Sales "]), "?")
    assert [v.decode() for v in out.numpy()] == [adult.MISSING_TOKEN] * 3 + ["Private", "Sales"]


def test_label_maps_positive_class_and_tolerates_uci_trailing_period(tf):
    out = adult._label(tf.constant([">50K", ">50K.", "<=50K", "<=50K.", " >50K"]), ">50K")
    assert out.numpy().tolist() == [1, 1, 0, 0, 1]


def test_feature_lists_cover_every_input_column_once(adult_cfg):
    used = set(adult.NUMERIC_FEATURES) | set(adult.LOG_NUMERIC_FEATURES) | set(
        adult.CATEGORICAL_FEATURES)
    features = {c.name for c in adult_cfg.feature_columns}
    assert used == features
    assert not set(adult.NUMERIC_FEATURES) & set(adult.LOG_NUMERIC_FEATURES)
    for a, b in adult.FEATURE_CROSSES:
        assert {a, b} <= set(adult.CATEGORICAL_FEATURES)
    assert set(adult.BUCKET_FEATURES) | set(adult.NONZERO_BUCKET_FEATURES) <= features


def test_factory_reads_label_from_config(adult_cfg):
    fn = adult.make_preprocessing_fn(adult_cfg)
    assert callable(fn) and adult.transformed_name("age") == "age_xf"
