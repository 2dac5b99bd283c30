"""The training input (pipelines.model.make_dataset) on small real TFRecord files (fast).

What the train step's speed and memory rest on: the dataset's length is known when the row count is
given (Keras runs several batches per call), every row arrives once per epoch in file order when not
shuffled, and the records are cached in memory only under the size limit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines import model as model_lib

N_ROWS = 70
BATCH = 16


class _Transformed:
    """Stands in for TFTransformOutput: make_dataset reads only the transformed feature spec."""

    def transformed_feature_spec(self):
        import tensorflow as tf

        return {"x_xf": tf.io.FixedLenFeature([], tf.float32),
                "c_xf": tf.io.FixedLenFeature([], tf.int64),
                "y_xf": tf.io.FixedLenFeature([], tf.int64)}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """Two TFRecord files of 70 rows in all: row i has x = i / 2, c = i % 5, y = i % 2."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("records")
    paths = [out / "part-00000.tfrecord", out / "part-00001.tfrecord"]
    for k, path in enumerate(paths):
        with tf.io.TFRecordWriter(str(path)) as writer:
            for i in range(k * 40, min((k + 1) * 40, N_ROWS)):
                ex = tf.train.Example(features=tf.train.Features(feature={
                    "x_xf": tf.train.Feature(float_list=tf.train.FloatList(value=[i / 2])),
                    "c_xf": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 5])),
                    "y_xf": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
                }))
                writer.write(ex.SerializeToString())
    return paths


def _dataset(files, **kwargs):
    pattern = str(files[0].parent / "part-*.tfrecord")
    return model_lib.make_dataset(pattern, _Transformed(), "y_xf", BATCH, seed=7,
                                  names=["x_xf", "c_xf"], **kwargs)


def _graph(ds) -> bytes:
    return ds._as_serialized_graph().numpy()  # the tf.data graph, to look for its CacheDataset


def test_should_cache_by_total_size(files):
    size = sum(f.stat().st_size for f in files)
    assert model_lib.should_cache([str(f) for f in files], limit=size)
    assert not model_lib.should_cache([str(f) for f in files], limit=size - 1)
    assert model_lib.CACHE_MAX_BYTES >= 32 * 1024 * 1024  # Adult's 16 MB train split stays cached


@pytest.mark.parametrize("cache", [True, False])
def test_rows_in_file_order_with_known_length(files, cache):
    ds = _dataset(files, shuffle=False, rows=N_ROWS, cache=cache)
    assert int(ds.cardinality()) == -(-N_ROWS // BATCH) == 5
    assert (b"CacheDataset" in _graph(ds)) is cache
    for _ in range(2):  # a second epoch reads the cache (or the files) again: the same rows
        batches = list(ds)
        x = np.concatenate([f["x_xf"].numpy() for f, _ in batches])
        y = np.concatenate([label.numpy() for _, label in batches])
        assert x.shape == (N_ROWS, 1) and y.shape == (N_ROWS, 1)
        np.testing.assert_array_equal(x[:, 0], np.arange(N_ROWS) / 2)
        np.testing.assert_array_equal(y[:, 0], np.arange(N_ROWS) % 2)
        assert batches[0][0]["c_xf"].dtype.name == "int64"


def test_cache_is_decided_by_the_size_limit(files, monkeypatch):
    assert b"CacheDataset" in _graph(_dataset(files, shuffle=True))
    monkeypatch.setattr(model_lib, "CACHE_MAX_BYTES", 100)  # the files are larger than that
    ds = _dataset(files, shuffle=True)
    assert b"CacheDataset" not in _graph(ds)
    assert int(ds.cardinality()) < 0  # no row count given: unknown length
    epochs = [np.concatenate([f["x_xf"].numpy()[:, 0] for f, _ in ds]) for _ in range(2)]
    for x in epochs:  # shuffled, every row once per epoch
        np.testing.assert_array_equal(np.sort(x), np.arange(N_ROWS) / 2)
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch


def test_steps_per_execution_reaches_keras():
    from types import SimpleNamespace

    hp = SimpleNamespace(hidden_units=[4], learning_rate=0.01)
    model = model_lib.build_model(["x_xf"], {"c_xf": 5}, hp, "binary", steps_per_execution=3)
    assert int(model._steps_per_execution.numpy()) == 3


def test_several_steps_per_call_only_for_long_epochs():
    assert model_lib.steps_per_execution(102) == 1  # Adult x1: tracing the loop would not pay
    assert model_lib.steps_per_execution(model_lib.SPE_MIN_BATCHES) == model_lib.STEPS_PER_EXECUTION
    assert model_lib.STEPS_PER_EXECUTION > 1
