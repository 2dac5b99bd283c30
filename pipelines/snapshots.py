"""Finding and reading snapshots (the output of ingest) and their validation status.

Called by validate, transform, evaluate, the DAG tasks and the CLI. pandas, pyarrow and tfx_bsl are
imported only inside the functions that read rows; reading rows imports no TensorFlow
(:func:`iter_records` reads the TFRecord framing, tfx_bsl decodes the tf.Examples).

A snapshot folder ``<home>/snapshots/<pipeline>/<snapshot_id>/`` holds ``<split>/data-*.tfrecord``
(tf.Example, one feature per config column, ints as int64, floats as float32, strings as bytes,
the missing marker kept as a literal), ``malformed.jsonl`` (source rows that did not parse, with the
reason) and ``provenance.json``. Its validation result lives beside it, in
``<snapshot_id>.validation/result.json``, whose ``status`` is ``accepted`` or ``rejected``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines import store
from pipelines.config import PipelineConfig
from pipelines.errors import PipelineError
from pipelines.store import read_json

SPLITS = ("train", "eval")
GOLDEN_SPLIT = "test"


def snapshots_root(cfg: PipelineConfig, home: Path) -> Path:
    return store.root(home, store.Kind.SNAPSHOT, cfg.name)


def hash_cache_file(cfg: PipelineConfig, home: Path) -> Path:
    """Ingest's sha256 cache of landing files and snapshot files (pipelines.hashing.StatCache):
    a dot file beside the snapshots, so never taken for an artifact. Deleting it is safe."""
    return snapshots_root(cfg, home) / ".sha256-cache.json"


def validation_dir(snapshot_uri: str | Path) -> Path:
    p = Path(snapshot_uri)
    return p.parent / f"{p.name}.validation"


def split_pattern(snapshot_uri: str | Path, split: str) -> str:
    """File pattern of one split, for TFXIO, tf.data and TFMA."""
    return str(Path(snapshot_uri) / split / "data-*.tfrecord")


def provenance(snapshot_uri: str | Path) -> dict[str, Any]:
    return read_json(Path(snapshot_uri) / "provenance.json")


def validation_status(snapshot_uri: str | Path) -> str | None:
    """``accepted``, ``rejected``, or None when the snapshot was never validated."""
    result = validation_dir(snapshot_uri) / "result.json"
    return read_json(result)["status"] if result.is_file() else None


def list_snapshots(cfg: PipelineConfig, home: Path, *, golden: bool | None = False,
                   status: str | None = None) -> list[Path]:
    """Snapshots of a pipeline, oldest ingest first; filtered by golden flag and validation status."""
    root = snapshots_root(cfg, home)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.name.startswith(".") or p.name.endswith(".validation"):
            continue
        if not (p / "provenance.json").is_file():
            continue
        prov = provenance(p)
        if golden is not None and bool(prov.get("golden")) != golden:
            continue
        if status is not None and validation_status(p) != status:
            continue
        found.append((prov.get("ingested_at", ""), p))
    return [p for _, p in sorted(found)]


def find_snapshot(cfg: PipelineConfig, home: Path, ref: str | None = None, *,
                  golden: bool = False) -> str:
    """Resolves a snapshot URI, a snapshot id (or a unique prefix), or None for the newest one."""
    if ref and Path(ref).is_dir():
        return str(Path(ref).resolve())
    candidates = list_snapshots(cfg, home, golden=golden)
    if ref:
        exact = [p for p in candidates if p.name == ref]  # an id, not its forced revisions <id>-rN
        candidates = exact or [p for p in candidates if p.name.startswith(ref)]
    if not candidates:
        what = f"matching {ref!r}" if ref else "at all"
        raise PipelineError(
            f"no {'golden ' if golden else ''}snapshot {what} under {snapshots_root(cfg, home)}; "
            f"run `pipelines ingest {cfg.name} ...` first"
        )
    if ref and len(candidates) > 1:
        raise PipelineError(f"snapshot id prefix {ref!r} is ambiguous: {[p.name for p in candidates]}")
    return str(candidates[-1])


def resolve_snapshots(cfg: PipelineConfig, home: Path, refs: list[str] | None) -> list[str]:
    """The snapshots a command works on: ``refs`` (URIs or ids), else the newest accepted one."""
    if refs:
        return [find_snapshot(cfg, home, ref) for ref in refs]
    accepted = list_snapshots(cfg, home, status="accepted")
    if not accepted:
        raise PipelineError(f"no accepted snapshot of {cfg.name} under {home}; run "
                            f"`pipelines ingest` and `pipelines validate` first")
    return [str(accepted[-1])]


def previous_accepted(cfg: PipelineConfig, home: Path, snapshot_uri: str | Path) -> str | None:
    """The newest accepted (non-golden) snapshot ingested before this one: the drift baseline."""
    me = Path(snapshot_uri).resolve()
    mine = provenance(me).get("ingested_at", "")
    earlier = [p for p in list_snapshots(cfg, home, status="accepted")
               if p.resolve() != me and provenance(p).get("ingested_at", "") <= mine]
    return str(earlier[-1]) if earlier else None


def raw_feature_spec(cfg: PipelineConfig, columns: list[str] | None = None) -> dict[str, Any]:
    """tf.io feature spec of the raw columns (label included), from the config schema.

    A nullable column is a ``VarLenFeature`` (a missing cell is an absent feature, a SparseTensor
    in the preprocessing_fn); any other column is a ``FixedLenFeature([])``. ``columns`` limits
    the spec to those names (serving parses only the feature columns).
    """
    import tensorflow as tf

    dtypes = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    return {c.name: (tf.io.VarLenFeature(dtypes[c.type]) if c.nullable
                     else tf.io.FixedLenFeature([], dtypes[c.type]))
            for c in cfg.columns if columns is None or c.name in columns}


BATCH_ROWS = 50_000  # rows per chunk of iter_frames: validate's GX run holds ~3.5 KB a chunk row (~180 MB)


def data_files(snapshot_uri: str | Path, split: str | None = None) -> list[str]:
    """The TFRecord files of one split (or of every split), in the row order of read_frame."""
    splits = [split] if split else [s for s in (*SPLITS, GOLDEN_SPLIT)
                                     if (Path(snapshot_uri) / s).is_dir()]
    return sorted(str(f) for s in splits for f in (Path(snapshot_uri) / s).glob("data-*.tfrecord"))


def _masked_crc(data: bytes, crc32c) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _crc32c_fn():
    try:
        import google_crc32c

        return google_crc32c.value
    except ImportError:  # Beam's own choice (python-snappy, crcmod)
        from apache_beam.io.tfrecordio import _default_crc32c_fn

        return _default_crc32c_fn


def iter_records(files: list[str]) -> Iterator[bytes]:
    """The serialized records of uncompressed TFRecord files, each length and payload checked
    against its masked CRC-32C as TensorFlow's reader does; no TensorFlow import."""
    crc32c = _crc32c_fn()
    for path in files:
        with open(path, "rb", buffering=1 << 20) as f:
            while head := f.read(12):
                length, length_crc = struct.unpack("<QI", head) if len(head) == 12 else (0, None)
                if length_crc is None or _masked_crc(head[:8], crc32c) != length_crc:
                    raise PipelineError(f"{path}: corrupt TFRecord header at byte {f.tell() - len(head)} "
                                        "(truncated or overwritten); ingest the span again with force")
                data, footer = f.read(length), f.read(4)
                if len(data) != length or len(footer) != 4 or \
                        struct.unpack("<I", footer)[0] != _masked_crc(data, crc32c):
                    raise PipelineError(f"{path}: corrupt or truncated TFRecord of {length} bytes; "
                                        "ingest the span again with force")
                yield data


def _decoder(cfg: PipelineConfig, columns: list[str]):
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    kinds = {"int": schema_pb2.INT, "float": schema_pb2.FLOAT, "string": schema_pb2.BYTES}
    schema = schema_pb2.Schema()
    for c in cfg.columns:
        if c.name in columns:
            schema.feature.add(name=c.name, type=kinds[c.type])
    return ExamplesToRecordBatchDecoder(schema.SerializeToString())


def _series(cfg: PipelineConfig, col, values):
    """One column of a decoded record batch (an Arrow list array) as read_frame types it: the
    cell's first value; ints int64 (nullable: Int64), floats float32, strings str (UTF-8,
    undecodable bytes replaced); a nullable column's absent cell is NA / NaN."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = len(values)
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
    present = lengths > 0
    flat = pc.list_flatten(values)
    if col.nullable or not present.all() or (lengths != 1).any():
        if not col.nullable:
            bad = int((lengths != 1).sum())
            raise PipelineError(f"column {col.name}: {bad:,} row(s) have no value or more than one "
                                "in a column the config says is not nullable; this snapshot was not "
                                "written by this config's ingest: ingest the span again")
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        take = np.where(present, starts, 0) if len(flat) else np.zeros(rows, dtype=np.int64)
        if len(flat):
            flat = flat.take(pa.array(take))
        else:  # no value at all: the dense defaults TensorFlow fills in
            flat = pa.array(np.zeros(rows), type=values.type.value_type) if col.type != "string" \
                else pa.array([b""] * rows, type=values.type.value_type)
    if col.type == "string":
        encoded = pc.dictionary_encode(flat)
        decoded = np.array([v.decode("utf-8", "replace") for v in encoded.dictionary.to_pylist()],
                           dtype=object)  # each distinct value decoded once, the objects shared
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        series = pd.Series(decoded[codes] if rows else np.array([], dtype=object), dtype=object)
    else:
        dtype = ("Int64" if col.nullable else "int64") if col.type == "int" else "float32"
        series = pd.Series(flat.to_numpy(zero_copy_only=False), dtype=dtype)
    if col.nullable and rows:
        series = series.mask(~present)  # missing cells: NA / NaN
    return series


def _frame(cfg: PipelineConfig, batch, columns: list[str], start: int = 0):
    import pandas as pd

    rows = batch.num_rows
    data = {c.name: _series(cfg, c, batch.column(c.name)) for c in cfg.columns if c.name in columns}
    frame = pd.DataFrame(data, columns=columns)
    frame.index = pd.RangeIndex(start, start + rows)
    return frame


def empty_frame(cfg: PipelineConfig, columns: list[str] | None = None):
    """A frame of no rows with read_frame's columns and types."""
    import pyarrow as pa

    names = columns or cfg.column_names
    decoder = _decoder(cfg, names)
    return _frame(cfg, pa.RecordBatch.from_pylist([], schema=decoder.ArrowSchema()), names)


def iter_frames(cfg: PipelineConfig, snapshot_uri: str | Path, split: str | None = None, *,
                rows: int | None = None, columns: list[str] | None = None) -> Iterator[Any]:
    """The rows of one split (or all splits) as pandas DataFrames of at most ``rows`` rows each,
    in read_frame's order, types and values (the index counts rows from the first chunk on);
    memory holds one chunk (``rows`` defaults to BATCH_ROWS). ``columns`` limits the columns
    decoded. Imports no TensorFlow: records are read by :func:`iter_records` and decoded by
    tfx_bsl's tf.Example decoder."""
    names = [c for c in cfg.column_names if columns is None or c in columns]
    decoder = _decoder(cfg, names)
    rows = rows or BATCH_ROWS
    batch: list[bytes] = []
    start = 0
    for record in iter_records(data_files(snapshot_uri, split)):
        batch.append(record)
        if len(batch) >= rows:
            yield _frame(cfg, decoder.DecodeBatch(batch), names, start)
            start += len(batch)
            batch = []
    if batch:
        yield _frame(cfg, decoder.DecodeBatch(batch), names, start)


def read_frame(cfg: PipelineConfig, snapshot_uri: str | Path, split: str | None = None):
    """Reads one split (or all splits) of a snapshot into one pandas DataFrame of raw values
    (memory grows with rows: steps that can work chunk by chunk use :func:`iter_frames`)."""
    import pyarrow as pa

    names = cfg.column_names
    decoder = _decoder(cfg, names)
    batches, chunk = [], []
    for record in iter_records(data_files(snapshot_uri, split)):
        chunk.append(record)
        if len(chunk) >= BATCH_ROWS:
            batches.append(decoder.DecodeBatch(chunk))
            chunk = []
    if chunk:
        batches.append(decoder.DecodeBatch(chunk))
    if not batches:
        return empty_frame(cfg)
    return _frame(cfg, pa.Table.from_batches(batches).combine_chunks().to_batches()[0], names)
