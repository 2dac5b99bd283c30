"""Unit tests of transforms/adult.py's own logic (no Beam): missing marker, label, names."""

from __future__ import annotations

import csv

import pytest

from pipelines.config import parse_config
from pipelines.snapshots import raw_feature_spec
from tests.conftest import SHARED_DATA
from transforms import adult
from transforms.lib import encode_label


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


def test_missing_marker_and_blank_map_to_the_reserved_token(tf):
    out = adult._clean_string(tf.constant(["?", " ? ", "", "Private", " Sales "]), "?")
    assert [v.decode() for v in out.numpy()] == [adult.MISSING_TOKEN] * 3 + ["Private", "Sales"]


def test_label_maps_positive_class_and_tolerates_uci_trailing_period(tf, adult_cfg):
    raw = tf.constant([">50K", ">50K.", "<=50K", "<=50K.", " >50K", "50K"])
    out = encode_label(adult._strip_uci_period(raw), adult_cfg)
    assert out.numpy().tolist() == [1, 1, 0, 0, 1, -1]  # a value outside the classes is -1, not 0


def test_feature_lists_cover_every_input_column_once(adult_cfg):
    used = set(adult.NUMERIC_FEATURES) | set(adult.LOG_NUMERIC_FEATURES) | set(
        adult.CATEGORICAL_FEATURES)
    features = {c.name for c in adult_cfg.feature_columns}
    assert used == features
    assert not set(adult.NUMERIC_FEATURES) & set(adult.LOG_NUMERIC_FEATURES)
    for a, b in adult.FEATURE_CROSSES:
        assert {a, b} <= set(adult.CATEGORICAL_FEATURES)
    assert set(adult.BUCKET_FEATURES) | set(adult.NONZERO_BUCKET_FEATURES) <= features


def _run_transform(cfg, rows, temp_dir):
    """AnalyzeAndTransformDataset of the config's preprocessing_fn on in-memory raw rows."""
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(raw_feature_spec(cfg)))
    with tft_beam.Context(temp_dir=str(temp_dir), force_tf_compat_v1=False):
        (out, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            adult.make_preprocessing_fn(cfg), output_record_batches=False)
    return out


@pytest.mark.slow
def test_factory_reads_label_from_config(adult_cfg, tmp_path):
    """The label encoding follows label.positive_class: the other class flips every 0/1."""
    types = {c.name: c.type for c in adult_cfg.columns}
    with open(SHARED_DATA / "adult_train.csv") as f:
        rows = [{k: int(v) if types[k] == "int" else v for k, v in row.items()}
                for _, row in zip(range(40), csv.DictReader(f), strict=False)]
    labels = [row["income"] for row in rows]
    assert set(labels) == {"<=50K", ">50K"}  # both classes among the real rows
    flipped = adult_cfg.model_dump(mode="json")
    flipped["label"]["positive_class"] = "<=50K"
    flipped_cfg = parse_config(flipped)

    out = _run_transform(adult_cfg, rows, tmp_path / "as_configured")
    out_flipped = _run_transform(flipped_cfg, rows, tmp_path / "flipped")
    got = [int(r["income_xf"]) for r in out]
    got_flipped = [int(r["income_xf"]) for r in out_flipped]
    assert got == [int(v == ">50K") for v in labels]
    assert got_flipped == [1 - v for v in got]
    assert adult.transformed_name("age") == "age_xf"
