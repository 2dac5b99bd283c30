"""Finding and reading snapshots (the output of ingest) and their validation status.

Called by validate, transform, evaluate, the DAG tasks and the CLI. TensorFlow and pandas are
imported only inside the functions that read rows.

A snapshot folder ``<home>/snapshots/<pipeline>/<snapshot_id>/`` holds ``<split>/data-*.tfrecord``
(tf.Example, one feature per config column, ints as int64, floats as float32, strings as bytes,
the missing marker kept as a literal), ``malformed.jsonl`` (source rows that did not parse, with the
reason) and ``provenance.json``. Its validation result lives beside it, in
``<snapshot_id>.validation/result.json``, whose ``status`` is ``accepted`` or ``rejected``.
"""

from __future__ import annotations

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


def read_frame(cfg: PipelineConfig, snapshot_uri: str | Path, split: str | None = None):
    """Reads one split (or all splits) of a snapshot into a pandas DataFrame of raw values."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    splits = [split] if split else [s for s in (*SPLITS, GOLDEN_SPLIT)
                                     if (Path(snapshot_uri) / s).is_dir()]
    files = sorted(str(f) for s in splits for f in (Path(snapshot_uri) / s).glob("data-*.tfrecord"))
    spec = raw_feature_spec(cfg)
    columns: dict[str, list] = {name: [] for name in spec}
    present: dict[str, list] = {name: [] for name in spec}  # nullable columns: row has a value
    if files:
        ds = tf.data.TFRecordDataset(files).batch(16384).map(lambda x: tf.io.parse_example(x, spec))
        for batch in ds:
            for name, values in batch.items():
                if isinstance(values, tf.SparseTensor):
                    rows = int(values.dense_shape[0])
                    mask = np.zeros(rows, dtype=bool)
                    first = values.indices.numpy()[:, 1] == 0  # one value per cell
                    mask[values.indices.numpy()[first, 0]] = True
                    dense = tf.sparse.to_dense(tf.sparse.slice(values, [0, 0], [rows, 1]))
                    columns[name].append(dense.numpy().reshape(rows))
                    present[name].append(mask)
                else:
                    columns[name].append(values.numpy())
    frame = {}
    for c in cfg.columns:
        parts = columns[c.name]
        if c.type == "string":
            values = np.concatenate(parts) if parts else np.array([], dtype=object)
            codes, uniq = pd.factorize(values)  # decode each distinct value once, share the objects
            decoded = np.array([v.decode("utf-8", "replace") for v in uniq], dtype=object)
            series = pd.Series(decoded[codes], dtype=object)
        else:
            dtype = ("Int64" if c.nullable else "int64") if c.type == "int" else "float32"
            series = pd.Series(np.concatenate(parts) if parts else [], dtype=dtype)
        if c.nullable and present[c.name]:
            series = series.mask(~np.concatenate(present[c.name]))  # missing cells: NA / NaN
        frame[c.name] = series
    return pd.DataFrame(frame, columns=cfg.column_names)
