"""Incremental transform (issue 11 item 3): TFT's analyzer cache per span.

A window of 7 spans is transformed, then the next day's window (6 spans shared, 1 new) reuses the
6 spans' accumulators and analyzes only the new one; its output must equal a full analysis of the
same window. The snapshots are written here from adult_train.csv in ingest's layout (tf.Example
typed as ingest types them, the train split one file per span: ``train/data-<span>-*``), marked
accepted as tests/transforms/test_transform_step.py does: what is under test is the transform.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from pathlib import Path

import pytest

from pipelines import store
from pipelines.context import RunContext
from pipelines.hashing import sha256_tree
from pipelines.store import read_json, write_json_atomic
from pipelines.transform import (
    CACHE_FILE,
    Part,
    analysis_parts,
    read_cache_entry,
    transform,
    write_cache_entry,
)
from tests.conftest import END_DATE, SHARED_DATA, SPAN_DATES

CTX = RunContext(run_id="pytest-incremental", triggered_by="test")
DAY0 = dt.date(2026, 11, 1)


def _write_records(path: Path, records: list[bytes]) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)


def adult_spans(cfg, n_spans: int = 8) -> list[tuple[list[bytes], list[bytes]]]:
    """All of adult_train.csv as ``n_spans`` daily spans of (train, eval) serialized tf.Examples
    (every fifth row of a span to eval)."""
    import tensorflow as tf

    types = {c.name: c.type for c in cfg.columns}

    def example(row: dict[str, str]) -> bytes:
        feature = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
                   if types[k] == "int" else
                   tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
                   for k, v in row.items()}
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    rows = [example(r) for r in csv.DictReader(open(SHARED_DATA / "adult_train.csv"))]
    size = -(-len(rows) // n_spans)
    spans = [rows[i:i + size] for i in range(0, len(rows), size)]
    return [([r for j, r in enumerate(s) if j % 5], s[::5]) for s in spans]


def write_window(root: Path, name: str, spans: dict[str, tuple[list[bytes], list[bytes]]],
                 reverse: bool = False) -> str:
    """An accepted snapshot of a window: train one file per span, eval one file."""
    snap = root / name
    for label, (train, _) in spans.items():
        _write_records(snap / "train" / f"data-{label}-00000-of-00001.tfrecord",
                       train[::-1] if reverse else train)
    _write_records(snap / "eval" / "data-00000-of-00001.tfrecord",
                   [r for _, ev in spans.values() for r in ev])
    write_json_atomic(snap / "provenance.json", {"golden": False, "ingested_at": name,
                                                 "spans": list(spans),
                                                 "content_sha256": sha256_tree(snap)})
    write_json_atomic(root / f"{name}.validation" / "result.json", {"status": "accepted"})
    return str(snap)


@pytest.fixture(scope="module")
def windows(adult_cfg, tmp_path_factory):
    """Two consecutive 7-span windows over 8 spans: A = days 0-6, B = days 1-7. B's shared spans
    hold the same rows in reverse order (another shard layout: the cache must still match)."""
    root = tmp_path_factory.mktemp("incremental_snapshots")
    spans = {(DAY0 + dt.timedelta(days=i)).isoformat(): s
             for i, s in enumerate(adult_spans(adult_cfg))}
    labels = list(spans)
    return (write_window(root, "window_a", {k: spans[k] for k in labels[:7]}),
            write_window(root, "window_b", {k: spans[k] for k in labels[1:]}, reverse=True),
            labels)


def test_parts_are_spans_and_their_hash_ignores_record_order(adult_cfg, windows):
    a, b, labels = windows
    parts_a, parts_b = analysis_parts([a]), analysis_parts([b])
    assert [p.span for p in parts_a] == labels[:7]
    assert [p.span for p in parts_b] == labels[1:]
    shared_a = {p.span: p.records_sha256 for p in parts_a}
    for p in parts_b[:-1]:  # the same rows, written in reverse order
        assert p.records_sha256 == shared_a[p.span]
    assert parts_b[-1].records_sha256 not in shared_a.values()
    assert sum(p.rows for p in parts_a) == sum(
        1 for f in Path(a, "train").iterdir() for _ in _iter_records(f))


def _iter_records(path: Path):
    import tensorflow as tf

    return tf.data.TFRecordDataset(str(path)).as_numpy_iterator()


def test_a_damaged_cache_entry_is_never_used(tmp_path, caplog):
    part = Part("snap", "2026-11-01", [], 3, "ab" * 32)
    entry = tmp_path / "entry"
    write_cache_entry(entry, part, {b"k": [b"v1", b"v2"]}, "tid")
    assert read_cache_entry(entry) == {b"k": [b"v1", b"v2"]}
    payload = (entry / CACHE_FILE).read_bytes()
    (entry / CACHE_FILE).write_bytes(payload.replace(b"djE", b"djI"))  # v1 -> v2, valid JSON
    with caplog.at_level(logging.WARNING):
        assert read_cache_entry(entry) is None
    assert "damaged" in caplog.text and "does not match the sha256" in caplog.text
    (entry / CACHE_FILE).unlink()
    assert read_cache_entry(entry) is None
    assert read_cache_entry(tmp_path / "absent") is None


def _values(transformed: dict[str, str]) -> dict[str, list]:
    """Every transformed row of each split, decoded and sorted (the files' order is by bytes)."""
    import tensorflow as tf

    out = {}
    for split, pattern in transformed.items():
        rows = []
        for r in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)).as_numpy_iterator():
            ex = tf.train.Example.FromString(r)
            rows.append(tuple(sorted(
                (k, tuple(f.float_list.value) or tuple(f.int64_list.value))
                for k, f in ex.features.feature.items())))
        out[split] = sorted(rows)
    return out


@pytest.mark.slow
def test_next_window_analyzes_one_span_and_equals_a_full_analysis(adult_cfg, windows, tmp_path,
                                                                 caplog):
    import tensorflow_transform as tft

    a, b, labels = windows
    incremental_home, full_home = tmp_path / "incremental", tmp_path / "full"
    first = transform(adult_cfg, incremental_home, CTX, snapshot_uris=[a], analyzer_cache=True)
    assert [p["cache"] for p in first["analysis"]] == ["miss"] * 7
    # damage yesterday's entry of one shared span: it must be detected, ignored and rewritten
    damaged = Path(next(p["cache_uri"] for p in first["analysis"] if p["span"] == labels[3]))
    payload = (damaged / CACHE_FILE).read_bytes()
    (damaged / CACHE_FILE).write_bytes(payload[:-10] + b"0" * 10)

    with caplog.at_level(logging.WARNING):
        incremental = transform(adult_cfg, incremental_home, CTX, snapshot_uris=[b],
                                analyzer_cache=True)
    full = transform(adult_cfg, full_home, CTX, snapshot_uris=[b], analyzer_cache=False)

    by_span = {p["span"]: p["cache"] for p in incremental["analysis"]}
    assert by_span == {**dict.fromkeys(labels[1:7], "hit"), labels[3]: "corrupt",
                       labels[7]: "miss"}
    assert "damaged" in caplog.text and str(damaged) in caplog.text
    assert read_cache_entry(damaged) is not None  # rewritten whole
    assert full["analysis"] is None
    assert not store.root(full_home, store.Kind.ANALYZER_CACHE, adult_cfg.name).exists()
    entries = store.root(incremental_home, store.Kind.ANALYZER_CACHE, adult_cfg.name).iterdir()
    assert len([e for e in entries if not e.name.startswith(".")]) == 8  # 7 + the new span

    # The same analysis: vocabulary and every analyzer value of the graph, and every row.
    inc_out = tft.TFTransformOutput(incremental["transform_graph_uri"])
    full_out = tft.TFTransformOutput(full["transform_graph_uri"])
    assert (Path(inc_out.vocabulary_file_by_name("categories")).read_bytes()
            == Path(full_out.vocabulary_file_by_name("categories")).read_bytes())
    assert incremental["rows"] == full["rows"]
    # every transformed row byte for byte (on a difference, the rows say which values differ)
    if ([o["sha256"] for o in incremental["outputs"][1:]]
            != [o["sha256"] for o in full["outputs"][1:]]):
        assert _values(incremental["transformed"]) == _values(full["transformed"])
        pytest.fail("the transformed data files differ in bytes but not in values")
    assert read_json(Path(incremental["transform_uri"]) / "transform.json")["analysis"] == \
        incremental["analysis"]


@pytest.mark.slow
def test_ingest_gives_a_span_the_same_train_rows_in_every_window(adult_cfg, tmp_path, ctx,
                                                                  staged, snapshot):
    """What makes the cache hit on real data: ingest splits each span on its own and writes its
    train rows to a file of its own, so a span shared by two windows has the same train rows."""
    from pipelines.ingest import ingest

    six = ingest(adult_cfg, tmp_path, ctx, span=END_DATE, window=6,
                 landing=Path(staged["landing"]))
    seven = analysis_parts([snapshot["uri"]])
    shorter = analysis_parts([six["uri"]])
    assert [p.span for p in seven] == [d.isoformat() for d in SPAN_DATES]
    assert [p.span for p in shorter] == [d.isoformat() for d in SPAN_DATES[1:]]
    assert ([(p.rows, p.records_sha256) for p in shorter]
            == [(p.rows, p.records_sha256) for p in seven[1:]])
