"""Ingest writes tf.Examples in protobuf's wire format by hand: TensorFlow must read them back as
the very Examples its own proto classes would have built, on the real Adult rows and at the edges.
"""

from __future__ import annotations

import csv
import math

import pytest

from pipelines.config import REPO_ROOT, load_config
from pipelines.csv_parse import BYTES, FLOAT, INT64, RowParser, example_bytes
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow  # imports TensorFlow

ADULT_TRAIN = SHARED_DATA / "adult_train.csv"


def _reference(entries):
    import tensorflow as tf

    make = {BYTES: lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])),
            FLOAT: lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=[v])),
            INT64: lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))}
    return tf.train.Example(features=tf.train.Features(
        feature={name: make[kind](value) for name, kind, value in entries}))


def _parsed(data: bytes):
    import tensorflow as tf

    return tf.train.Example.FromString(data)


EDGES = [
    ("neg", INT64, -1), ("min", INT64, -2**63), ("max", INT64, 2**63 - 1), ("zero", INT64, 0),
    ("big", INT64, 300), ("empty", BYTES, b""), ("long", BYTES, "é".encode() * 200),
    ("nul", BYTES, b"a\x00b"), ("huge", FLOAT, 1e40), ("tiny", FLOAT, -1e-50),
    ("inf", FLOAT, -math.inf), ("half", FLOAT, -0.5), ("pi", FLOAT, math.pi),
    ("edge", FLOAT, 3.4028236e38), ("é-name", BYTES, b"x"),
]


@pytest.mark.parametrize("entry", EDGES, ids=[e[0] for e in EDGES])
def test_each_edge_value_reads_back_as_protobufs_own(entry):
    assert _parsed(example_bytes([entry])) == _reference([entry])
    # one feature: no map order to differ in, so the bytes are protobuf's own
    assert example_bytes([entry]) == _reference([entry]).SerializeToString()


def test_all_edges_in_one_example_and_nan():
    assert _parsed(example_bytes(EDGES)) == _reference(EDGES)
    value = _parsed(example_bytes([("n", FLOAT, math.nan)])).features.feature["n"].float_list.value
    assert len(value) == 1 and math.isnan(value[0])
    assert _parsed(example_bytes([])) == _reference([])


def test_every_real_adult_row_reads_back_as_protobufs_own():
    cfg = load_config(REPO_ROOT / "configs" / "adult.yaml")
    parser = RowParser.from_config(cfg)
    with ADULT_TRAIN.open(newline="") as f:
        rows = list(csv.reader(f))
    names = [h.strip() for h in rows[0]]
    types = dict(parser.columns)
    convert = {"string": (BYTES, str.encode), "int": (INT64, int), "float": (FLOAT, float)}
    checked = 0
    for fields in rows[1:]:
        if len(fields) != len(names):
            continue
        values = dict(zip(names, (f.strip() for f in fields), strict=True))
        payload, reason = parser.to_example(values)
        assert reason is None, reason
        entries = [(n, convert[types[n]][0], convert[types[n]][1](values[n]))
                   for n, _ in parser.columns
                   if not (n in parser.nullable and values[n] in ("", parser.missing_marker))]
        assert _parsed(payload) == _reference(entries)
        checked += 1
    assert checked == len(rows) - 1 > 30_000


def test_an_int_past_64_bits_is_refused_with_the_reason():
    cfg = load_config(REPO_ROOT / "configs" / "adult.yaml")
    parser = RowParser.from_config(cfg)
    int_column = next(n for n, t in parser.columns if t == "int")
    values = {n: ("1" if t != "string" else "x") for n, t in parser.columns}
    values[int_column] = str(2**63)
    payload, reason = parser.to_example(values)
    assert payload is None and reason == f"column {int_column}: '{2**63}' does not fit in 64 bits"
