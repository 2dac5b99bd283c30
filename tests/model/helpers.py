"""Helpers for the model tests: raw rows from snapshots, edited copies, predictions."""

from __future__ import annotations

from pathlib import Path


def raw_examples(snapshot_uri: str, split: str, n: int) -> list[bytes]:
    """The first ``n`` serialized raw tf.Examples of one split of a snapshot."""
    import tensorflow as tf

    files = sorted(str(f) for f in (Path(snapshot_uri) / split).glob("data-*.tfrecord"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files).take(n)]


def with_int_feature(records: list[bytes], name: str, fn) -> list[bytes]:
    """Copies of ``records`` with int64 feature ``name`` replaced by ``fn(value)``."""
    from tensorflow.core.example import example_pb2

    out = []
    for r in records:
        ex = example_pb2.Example.FromString(r)
        values = ex.features.feature[name].int64_list.value
        values[0] = int(fn(values[0]))
        out.append(ex.SerializeToString())
    return out


def labels(records: list[bytes], column: str, positive: str) -> list[int]:
    from tensorflow.core.example import example_pb2

    return [int(example_pb2.Example.FromString(r).features.feature[column].bytes_list.value[0]
                .decode() == positive) for r in records]


def predict(signature, records: list[bytes], batch: int = 4096):
    """Probabilities of the positive class from a serving_default signature, as a 1-D array."""
    import numpy as np
    import tensorflow as tf

    parts = [signature(examples=tf.constant(records[i:i + batch]))["probabilities"].numpy()
             for i in range(0, len(records), batch)]
    return np.concatenate(parts)[:, 0]
