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


RELATIONSHIPS = ["Husband", "Not-in-family", "Other-relative", "Own-child", "Unmarried", "Wife"]
# Adult relabelled per task type, for tests/model/test_tasks.py (tiny_transform reads the columns).
TASK_LABELS = {
    "binary": {"column": "income", "task": "binary", "classes": ["<=50K", ">50K"],
               "positive_class": ">50K"},
    "multiclass": {"column": "relationship", "task": "multiclass", "classes": RELATIONSHIPS},
    "regression": {"column": "hours_per_week", "task": "regression"},
}
# Columns in the snapshot that the model must not read nor serving require.
TASK_EXCLUDED = {"binary": ["fnlwgt", "race"], "multiclass": ["fnlwgt", "income"],
                 "regression": ["fnlwgt", "income"]}


def task_config(adult_cfg, task: str, excluded: list[str] | None = None, **model):
    """A config over the Adult snapshot with the label of ``task`` and tiny_transform."""
    from pipelines.config import parse_config

    raw = adult_cfg.model_dump(mode="json")
    excluded = TASK_EXCLUDED[task] if excluded is None else excluded
    for column in raw["columns"]:
        column["role"] = "excluded" if column["name"] in excluded else "feature"
    raw.update(
        name=f"adult_{task}", label=TASK_LABELS[task], sample_data=None, evaluation={},
        monitoring={},  # Adult's live gates are binary ones: defaults, no alarm
        transform_module="tests.model.tiny_transform",
        model={"hidden_units": [32, 16], "learning_rate": 0.005, "batch_size": 256, "epochs": 6,
               "early_stopping_patience": 2, "seed": 7, **model})
    return parse_config(raw, f"<adult_{task}>")


def without_features(records: list[bytes], names: list[str]) -> list[bytes]:
    """Copies of ``records`` with the features ``names`` removed."""
    from tensorflow.core.example import example_pb2

    out = []
    for r in records:
        ex = example_pb2.Example.FromString(r)
        for name in names:
            del ex.features.feature[name]
        out.append(ex.SerializeToString())
    return out


def raw_values(records: list[bytes], column: str) -> list:
    """The value of one raw feature in each record (str for bytes, else the number)."""
    from tensorflow.core.example import example_pb2

    values = []
    for r in records:
        f = example_pb2.Example.FromString(r).features.feature[column]
        kind = f.WhichOneof("kind")
        v = getattr(f, kind).value[0]
        values.append(v.decode() if isinstance(v, bytes) else v)
    return values
