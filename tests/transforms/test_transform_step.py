"""The transform step: real Beam + TFT runs on real Adult rows (TFX taxi_utils_test style).

A small DirectRunner run over fixed rows of adult_train.csv is compared with the schema file kept
beside this test; the full session transform is re-run under DirectRunner multi_processing with
two workers and must give byte-identical data; re-runs reuse the artifact; bad inputs fail clearly.
Regenerate the schema file after a deliberate feature change with
``UPDATE_TRANSFORM_SCHEMA=1 .venv/bin/pytest tests/transforms -k schema``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from pipelines.context import RunContext
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_file, sha256_tree
from pipelines.store import write_json_atomic
from pipelines.transform import transform
from tests.conftest import SHARED_DATA

SCHEMA_FILE = Path(__file__).parent / "adult_transformed_schema.pbtxt"
CTX = RunContext(run_id="pytest-transforms", triggered_by="test")


def write_small_snapshot(cfg, root: Path, n_train: int = 300, n_eval: int = 100) -> str:
    """An accepted snapshot of the first rows of adult_train.csv, typed as ingest types them."""
    import tensorflow as tf

    types = {c.name: c.type for c in cfg.columns}
    rows = list(csv.DictReader(open(SHARED_DATA / "adult_train.csv")))[: n_train + n_eval]

    def example(row: dict[str, str]) -> bytes:
        feature = {
            k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
            if types[k] == "int" else tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
            for k, v in row.items()
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    snap = root / "snapshots" / cfg.name / "small"
    for split, part in (("train", rows[:n_train]), ("eval", rows[n_train:])):
        (snap / split).mkdir(parents=True)
        with tf.io.TFRecordWriter(str(snap / split / "data-00000.tfrecord")) as w:
            for row in part:
                w.write(example(row))
    write_json_atomic(snap / "provenance.json", {"golden": False, "ingested_at": "test",
                                                 "content_sha256": sha256_tree(snap)})
    write_json_atomic(snap.parent / "small.validation" / "result.json", {"status": "accepted"})
    return str(snap)


@pytest.fixture(scope="module")
def small_transform(adult_cfg, tmp_path_factory):
    home = tmp_path_factory.mktemp("small_transform")
    return transform(adult_cfg, home, CTX, snapshot_uris=[write_small_snapshot(adult_cfg, home)])


@pytest.mark.slow
def test_small_run_output_schema_matches_schema_file(small_transform):
    schema = (Path(small_transform["transform_graph_uri"]) / "transformed_metadata"
              / "schema.pbtxt").read_text()
    if os.environ.get("UPDATE_TRANSFORM_SCHEMA"):
        SCHEMA_FILE.write_text(schema)
    assert schema == SCHEMA_FILE.read_text(), (
        "the transformed schema changed; if the feature change is deliberate, regenerate "
        f"{SCHEMA_FILE.name} with UPDATE_TRANSFORM_SCHEMA=1")
    assert small_transform["rows"] == {"train": 300, "eval": 100}


@pytest.mark.slow
def test_small_run_features_are_well_formed(small_transform):
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    out = tft.TFTransformOutput(small_transform["transform_graph_uri"])
    spec = out.transformed_feature_spec()
    assert all(name.endswith("_xf") for name in spec)
    ds = tf.data.TFRecordDataset(small_transform["transformed"]["train"].replace("*", "00000-of-00001"))
    batch = tf.io.parse_example(next(iter(ds.batch(1000))), spec)
    assert abs(float(np.mean(batch["age_xf"]))) < 1e-5  # z-scored on the very rows analyzed
    assert abs(float(np.std(batch["age_xf"])) - 1) < 1e-3
    vocab = out.vocabulary_by_name("categories")
    assert b"occupation=__missing__" in vocab  # the `?` marker has its reserved entry
    assert set(np.unique(batch["income_xf"])) == {0, 1}


@pytest.mark.slow
def test_multiprocessing_runner_gives_identical_output(adult_cfg, transformed, snapshot, tmp_path):
    mp_cfg = adult_cfg.model_copy(update={"beam": adult_cfg.beam.model_copy(update={"options": [
        "--direct_running_mode=multi_processing", "--direct_num_workers=2"]})})
    again = transform(mp_cfg, tmp_path, CTX, snapshot_uris=[snapshot["uri"]])
    assert again["transform_id"] == transformed["transform_id"] and not again["reused"]
    assert again["rows"] == transformed["rows"]
    for split in ("train", "eval"):
        mine = [o for o in again["outputs"] if o["properties"].get("split") == split][0]
        theirs = [o for o in transformed["outputs"] if o["properties"].get("split") == split][0]
        assert mine["sha256"] == theirs["sha256"], f"{split} data differs under multi_processing"
    for rel in ("transform_fn/assets/categories", "transformed_metadata/schema.pbtxt"):
        assert sha256_file(Path(again["transform_graph_uri"]) / rel) == sha256_file(
            Path(transformed["transform_graph_uri"]) / rel)


@pytest.mark.slow
def test_rerun_on_same_inputs_reuses_the_artifact(adult_cfg, pipeline_home, transformed, snapshot):
    again = transform(adult_cfg, pipeline_home, CTX, snapshot_uris=[snapshot["uri"]])
    assert again["reused"] and again["transform_uri"] == transformed["transform_uri"]
    assert again["sha256"] == transformed["sha256"]


@pytest.mark.slow
def test_external_sort_equals_an_in_memory_sort_by_record_sha256(tmp_path):
    """The transformed files are sorted through spill files (bounded memory): the bytes must be
    those of TensorFlow writing every record sorted by its sha256 (the format before the spill)."""
    import hashlib
    import random

    import tensorflow as tf

    from pipelines import transform as step

    rnd = random.Random(7)
    records = [rnd.randbytes(rnd.randrange(0, 300)) for _ in range(2000)]
    records += records[:50]  # duplicates (equal rows) keep both copies
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(3):
        with tf.io.TFRecordWriter(str(shards / f"part-{i:05d}-of-00003.tfrecord")) as w:
            for r in records[i::3]:
                w.write(r)
    expected = tmp_path / "expected.tfrecord"
    with tf.io.TFRecordWriter(str(expected)) as w:
        for r in sorted(records, key=lambda r: hashlib.sha256(r).digest()):
            w.write(r)
    got = tmp_path / "out" / "data.tfrecord"
    got.parent.mkdir()
    count, digest = step._sort_records(str(shards / "part*"), got)
    assert count == len(records)
    assert got.read_bytes() == expected.read_bytes()
    assert digest == sha256_file(expected)
    assert not (shards / "sort-spill").exists()
    # a truncated shard is refused with the file named, not silently shortened
    (shards / "part-00000-of-00003.tfrecord").write_bytes(
        (shards / "part-00000-of-00003.tfrecord").read_bytes()[:-3])
    got.unlink()
    with pytest.raises(PipelineError, match="part-00000-of-00003.tfrecord: truncated"):
        step._sort_records(str(shards / "part*"), got)
    assert not (shards / "sort-spill").exists()


def test_refuses_a_snapshot_that_was_not_validated(adult_cfg, tmp_path):
    snap = tmp_path / "snapshots" / "adult" / "abc"
    for split in ("train", "eval"):
        (snap / split).mkdir(parents=True)
        (snap / split / "data-00000.tfrecord").write_bytes(b"")
    with pytest.raises(PipelineError, match="not validated.*pipelines validate"):
        transform(adult_cfg, tmp_path, CTX, snapshot_uris=[str(snap)])
    write_json_atomic(snap.parent / "abc.validation" / "result.json", {"status": "rejected"})
    with pytest.raises(PipelineError, match="is rejected"):
        transform(adult_cfg, tmp_path, CTX, snapshot_uris=[str(snap)])


def test_refuses_a_golden_snapshot_and_an_empty_list(adult_cfg, tmp_path):
    snap = tmp_path / "golden"
    (snap / "test").mkdir(parents=True)
    with pytest.raises(PipelineError, match="no data for split"):
        transform(adult_cfg, tmp_path, CTX, snapshot_uris=[str(snap)])
    with pytest.raises(PipelineError, match="at least one snapshot"):
        transform(adult_cfg, tmp_path, CTX, snapshot_uris=[])


def test_unknown_transform_module_is_a_clear_error(adult_cfg, tmp_path):
    from pipelines.transform import load_preprocessing_fn

    cfg = adult_cfg.model_copy(update={"transform_module": "transforms.nope"})
    with pytest.raises(PipelineError, match="cannot be imported"):
        load_preprocessing_fn(cfg)
