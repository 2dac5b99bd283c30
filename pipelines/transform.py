"""Step `transform`: Beam + TensorFlow Transform over validated snapshots.

Called by ``runner.run_step("transform", ...)`` (the CLI ``pipelines transform`` and the DAG task).
Analyzes the train split only, transforms train and eval with the resulting graph, and writes::

    <home>/transforms/<pipeline>/<transform_id>/
        transform_graph/          tft.TFTransformOutput dir (transform_fn/, transformed_metadata/)
        transformed/train/data-00000-of-00001.tfrecord   transformed tf.Examples
        transformed/eval/data-00000-of-00001.tfrecord
        transform.json            the step result (inputs, outputs, hashes, counts, timings)

Rows are fed to TFT as Arrow record batches through tfx_bsl's ``TFExampleRecord`` TFXIO (not as
Python dicts: that path is twice as slow). The Beam runner and its flags come from ``cfg.beam``.

The transformed data files are byte-identical whatever the runner, its parallelism or its bundle
order: each tf.Example is serialized canonically (sorted feature map), z-scores are accumulated
in float64 (see transforms/adult.py), and after Beam writes its shards each split's records are
sorted by their sha256 (a fixed pseudo-random order, which also pre-shuffles the training data)
into a single file, through 256 spill files (an external sort: memory does not grow with rows).

Memory does not grow with rows (benchmarks/results/transform_memory.md: peak ~0.93 GB at Adult x1
and x20): the train rows are read twice, once for the analysis and once for the transform, so
Beam's in-process runner never holds them between the two (see :func:`run_beam`). The
``transform_id`` is the sha256 of the input snapshots, the transform module's source and the
config parts it reads, so re-running on the same inputs reuses the artifact.

Incremental analysis (issue 11): the train rows are analyzed per *part*, one TFT dataset key each:
a span of a snapshot whose train split is written one file per span (``train/data-<span>-*``), or
a whole snapshot otherwise. Each part's analyzer accumulators (TFT's cache: vocabulary counts,
mean/variance sums, quantile sketches) are kept under ``<home>/analyzer_cache/<pipeline>/<key>/``
where ``key`` hashes the transform code and config (as ``transform_id``) with an order-independent
hash of the part's train records, so an entry is reused only for the very same rows and code. A
daily window that shares 6 of 7 spans with yesterday's analyzes one span and merges the other six
from their accumulators (``tft_beam.AnalyzeDatasetWithCache``); the result equals a full analysis
(tests/transforms/test_incremental.py). An entry is written once, atomically, with the sha256 of
its payload; one whose bytes do not match is ignored with a warning and analyzed again.
``transform.json``'s ``analysis`` lists every part with ``cache: hit | miss | corrupt``.
It is off unless ``transform(..., analyzer_cache=True)``: at Adult's size (23k train rows) the
per-span datasets cost more fixed work than the analysis they save (see the benchmark's notes).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import re
import shutil
import struct
import sys
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext, utcnow
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_json, sha256_tree
from pipelines.results import Artifact, ArtifactKind, artifact
from pipelines.snapshots import SPLITS, provenance, split_pattern, validation_status
from pipelines.store import publish, read_json, write_json_atomic

log = logging.getLogger(__name__)

GRAPH_DIR = "transform_graph"
DATA_DIR = "transformed"
RESULT_FILE = "transform.json"
DATA_FILE = "data-00000-of-00001.tfrecord"
CACHE_FILE = "accumulators.json"  # the analyzer cache payload of one part
CACHE_RECORD = "entry.json"  # its record: what it is of, and the payload's sha256 (written last)
CACHE_FORMAT = 1  # bump when the payload layout changes: it is part of the key
# A train file written per span by ingest: data-<span>-00000-of-00001.tfrecord
_SPAN_FILE = re.compile(r"^data-(?P<span>.+)-\d{5}-of-\d{5}\.tfrecord$")


def load_preprocessing_fn(cfg: PipelineConfig):
    """Imports ``cfg.transform_module`` and returns its preprocessing_fn (factory or plain)."""
    try:
        module = importlib.import_module(cfg.transform_module)
    except ImportError as exc:
        raise PipelineError(
            f"transform_module {cfg.transform_module!r} cannot be imported ({exc}); it must be a "
            "module on the path, e.g. transforms.adult for transforms/adult.py") from exc
    if hasattr(module, "make_preprocessing_fn"):
        return module.make_preprocessing_fn(cfg)
    if hasattr(module, "preprocessing_fn"):
        return module.preprocessing_fn
    raise PipelineError(
        f"transform module {cfg.transform_module!r} defines neither make_preprocessing_fn(cfg) "
        "nor preprocessing_fn(inputs); add one of them")


def _source_file(name: str) -> Path | None:
    """The .py file of module ``name``, found without importing it or its package's modules
    (importlib's find_spec imports the parents of a dotted name, and they import TensorFlow)."""
    top, _, rest = name.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for location in spec.submodule_search_locations or []:
        base = Path(location, *rest.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _module_source(name: str) -> str:
    """The source of module ``name``, read from its file without executing it."""
    path = _source_file(name)
    if path is None:
        raise PipelineError(f"transform_module {name!r} cannot be found as a Python source file; "
                            "it must be a module on the path, e.g. transforms.adult for "
                            "transforms/adult.py")
    with tokenize.open(path) as f:  # as inspect.getsource reads it
        return f.read()


def _module_sha256(cfg: PipelineConfig) -> str:
    """sha256 of the transform module's source and of every module of its package it imports
    (``transforms/lib.py``, say), so a change to a shared helper is a new transform.

    Read from the source files (``ast``), never imported: a reused transform must not pay for
    importing TensorFlow, which every transform module does at its top."""
    name = cfg.transform_module
    source = _module_source(name)
    package = name.split(".")[0] + "."
    used: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                               name.rpartition(".")[0]) if node.level else \
                node.module or ""
            # ``from pkg import mod`` names a module; ``from pkg.mod import f`` its module.
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        used.update(t for t in targets if t.startswith(package) and t != name
                    and _source_file(t) is not None)
    digest = hashlib.sha256(source.encode())
    for module in sorted(used):
        digest.update(_module_source(module).encode())
    return digest.hexdigest()


def _snapshot_input(uri: str) -> Artifact:
    """The lineage record of one input snapshot; refuses missing, unvalidated or rejected ones."""
    path = Path(uri)
    missing = [s for s in SPLITS if not list((path / s).glob("data-*.tfrecord"))]
    if missing:
        raise PipelineError(
            f"snapshot {uri} has no data for split(s) {missing}; pass the URI printed by "
            "`pipelines ingest` (a golden snapshot cannot be transformed for training)")
    status = validation_status(path)
    if status != "accepted":
        raise PipelineError(
            f"snapshot {uri} is {'not validated' if status is None else status}; only accepted "
            f"snapshots are transformed: run `pipelines validate <config> --snapshot {uri}`")
    files = sorted(f for s in SPLITS for f in (path / s).glob("data-*.tfrecord"))
    # Recorded as ingest recorded it (tree hash of the folder), so lineage links the two steps;
    # the content hash ingest stored in provenance.json addresses the transform.
    return artifact(ArtifactKind.SNAPSHOT, path.resolve(), sha256_tree(path),
                           sum(f.stat().st_size for f in files),
                           data_sha256=provenance(path)["content_sha256"])


def _code_identity(cfg: PipelineConfig) -> dict[str, Any]:
    """What, besides the rows, decides the analysis: transform code and the config it reads."""
    return {
        "module": cfg.transform_module,
        "module_sha256": _module_sha256(cfg),
        "columns": [c.model_dump() for c in cfg.columns],
        "label": cfg.label.model_dump(),
        "missing_marker": cfg.source.missing_marker,
        # the installed version, without importing TF Transform (seconds of TensorFlow imports)
        "tft": importlib.metadata.version("tensorflow-transform"),
    }


def transform_id(cfg: PipelineConfig, inputs: list[Artifact]) -> str:
    """Content address of a transform: input data, transform code and the config it reads."""
    return sha256_json({"snapshots": [i["properties"]["data_sha256"] for i in inputs],
                        **_code_identity(cfg)})[:16]


@dataclass
class Part:
    """One TFT dataset of the analysis: the train rows of one span (or of one whole snapshot)."""

    snapshot: str
    span: str | None  # None: the snapshot's whole train split
    files: list[str]
    rows: int
    records_sha256: str  # order-independent: sha256 of the sorted sha256s of the records

    def label(self) -> str:
        return f"{Path(self.snapshot).name}/{self.span or 'train'}"


SORT_BUCKETS = 256  # the sort's spill files: one per first byte of the records' sha256


def _tfrecord_frames(path: Path, fix: str = "run the transform again"):
    """(sha256 of the record, its whole TFRecord frame: length, CRC, data, CRC) of each record of
    a TFRecord file, streamed, without TensorFlow; a truncated file is refused (``fix`` says what
    to do)."""
    with open(path, "rb", buffering=1 << 20) as f:
        while head := f.read(12):
            length = struct.unpack_from("<Q", head)[0] if len(head) == 12 else None
            body = f.read(length + 4) if length is not None else b""
            if length is None or len(body) != length + 4:
                raise PipelineError(f"{path}: truncated TFRecord at byte {f.tell()}; {fix}")
            yield hashlib.sha256(memoryview(body)[:length]).digest(), head + body


def _records_digest(files: list[str]) -> tuple[int, str]:
    """(count, order-independent sha256) of the records of TFRecord files, read without TensorFlow:
    the same rows in another order (another Beam shard layout) give the same digest."""
    digests = sorted(digest for f in files
                     for digest, _ in _tfrecord_frames(Path(f), "ingest it again"))
    return len(digests), hashlib.sha256(b"".join(digests)).hexdigest()


def analysis_parts(snapshot_uris: list[str]) -> list[Part]:
    """The parts the train rows are analyzed in: per span where the snapshot's train split is
    written one file per span, else one part per snapshot; in snapshot then span order."""
    parts = []
    for uri in snapshot_uris:
        files = sorted(str(f) for f in (Path(uri) / "train").glob("data-*.tfrecord"))
        spans: dict[str | None, list[str]] = {}
        for f in files:
            m = _SPAN_FILE.match(Path(f).name)
            spans.setdefault(m.group("span") if m else None, []).append(f)
        if None in spans:  # any file not per span: the whole split is one part
            spans = {None: files}
        for span, group in sorted(spans.items(), key=lambda kv: kv[0] or ""):
            rows, digest = _records_digest(group)
            parts.append(Part(uri, span, group, rows, digest))
    return parts


def cache_key(cfg: PipelineConfig, part: Part) -> str:
    """The analyzer cache entry of a part: its rows and everything that decides their analysis."""
    return sha256_json({"format": CACHE_FORMAT, "rows": part.records_sha256,
                        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
                        **_code_identity(cfg)})[:32]


def read_cache_entry(entry: Path) -> dict[bytes, list[bytes]] | None:
    """The accumulators of a cache entry, or None (with a warning) when it is missing or its
    payload does not match the sha256 its record holds: never a damaged entry."""
    record_file, payload_file = entry / CACHE_RECORD, entry / CACHE_FILE
    if not record_file.is_file():
        return None
    try:
        record = read_json(record_file)
        payload = payload_file.read_bytes()
        if hashlib.sha256(payload).hexdigest() != record["payload_sha256"]:
            raise ValueError(f"{CACHE_FILE} does not match the sha256 in {CACHE_RECORD}")
        doc = json.loads(payload)
        return {base64.b64decode(k): [base64.b64decode(v) for v in values]
                for k, values in doc["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("analyzer cache entry %s is damaged (%s): ignored, its span is analyzed "
                    "again and the entry rewritten", entry, exc)
        return None


def write_cache_entry(entry: Path, part: Part, entries: dict[bytes, list[bytes]],
                      tid: str, replace: bool = False) -> None:
    """Publishes one part's accumulators atomically; the record holds the payload's sha256."""
    payload = json.dumps({"entries": {
        base64.b64encode(k).decode(): [base64.b64encode(v).decode() for v in sorted(values)]
        for k, values in sorted(entries.items())}}, sort_keys=True).encode()
    with publish(entry, replace=replace) as tmp:
        (tmp / CACHE_FILE).write_bytes(payload)
        write_json_atomic(tmp / CACHE_RECORD, {
            "key": entry.name, "snapshot": part.snapshot, "span": part.span, "rows": part.rows,
            "records_sha256": part.records_sha256,
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "entries": len(entries), "written_by_transform": tid, "created_at": utcnow()})


def _sort_records(shard_pattern: str, out_file: Path) -> tuple[int, str]:
    """Rewrites Beam's shards as one file sorted by record sha256; returns (count, file sha256).

    An external sort, so memory does not grow with the split: each record's frame goes to the
    spill file of its sha256's first byte (prefixed by the sha256), then spill files are sorted
    one at a time, in byte order, into the output. The bytes equal an in-memory sort's."""
    import glob

    files = sorted(glob.glob(shard_pattern))
    spill_dir = Path(shard_pattern).parent / "sort-spill"  # beside the shards
    spill_dir.mkdir()
    try:
        spills = [open(spill_dir / f"{b:03d}", "wb") for b in range(SORT_BUCKETS)]
        count = 0
        try:
            for f in files:
                for digest, frame in _tfrecord_frames(Path(f)):
                    spills[digest[0]].write(digest + frame)
                    count += 1
        finally:
            for spill in spills:
                spill.close()
        h = hashlib.sha256()
        with open(out_file, "wb") as out:
            for b in range(SORT_BUCKETS):
                data = (spill_dir / f"{b:03d}").read_bytes()
                items, pos = [], 0
                while pos < len(data):  # (sha256, frame start, frame end)
                    end = pos + 32 + 12 + struct.unpack_from("<Q", data, pos + 32)[0] + 4
                    items.append((data[pos:pos + 32], pos + 32, end))
                    pos = end
                items.sort(key=lambda item: item[0])
                view = memoryview(data)
                for _, start, end in items:
                    h.update(view[start:end])
                    out.write(view[start:end])
                view.release()
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    return count, h.hexdigest()


def _encode_canonical(batch: tuple[Any, dict]) -> list[bytes]:
    """Serializes a transformed record batch as tf.Examples with a canonical byte layout.

    tfx_bsl's C++ encoder writes the feature map in hash order, which differs between processes;
    deterministic re-serialization sorts the map keys so equal rows give equal bytes everywhere.
    """
    from tensorflow.core.example import example_pb2
    from tfx_bsl.public import tfxio

    return [example_pb2.Example.FromString(b).SerializeToString(deterministic=True)
            for b in tfxio.RecordBatchToExamplesEncoder().encode(batch[0])]


def run_beam(cfg: PipelineConfig, train_patterns: list[str], eval_patterns: list[str],
             out: Path, parts: list[Part] | None = None,
             cached: dict[int, dict[bytes, list[bytes]]] | None = None) -> list[int]:
    """Analyze on train, transform train and eval; writes the graph and sharded TFRecords.

    Without ``parts`` the train rows are analyzed as one dataset (TFT's AnalyzeAndTransform).
    With them, each part is a dataset of its own (``AnalyzeDatasetWithCache``): part ``i`` whose
    accumulators are in ``cached[i]`` is not analyzed again, and the accumulators of every part
    that was are written to ``out/cache/<i>.json``. Returns the indexes of the analyzed parts.
    """
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
    from tfx_bsl.public import tfxio

    from pipelines.beam_options import pipeline_options
    from pipelines.snapshots import raw_feature_spec

    preprocessing_fn = load_preprocessing_fn(cfg)
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec(cfg))

    def source(patterns: list[str]):
        return tfxio.TFExampleRecord(patterns, schema=schema,
                                     telemetry_descriptors=["pipelines", "transform"])

    sources = {split: source(patterns)
               for split, patterns in (("train", train_patterns), ("eval", eval_patterns))}
    adapter = sources["train"].TensorAdapterConfig()
    temp_dir = out / "tmp"
    analyzed: list[int] = []
    cached = cached or {}
    if parts is not None:
        keys = [tft_beam.analyzer_cache.DatasetKey(f"part{i:05d}") for i in range(len(parts))]
        analyzed = sorted(_parts_to_read(preprocessing_fn, adapter, keys, cached))
    # Memory: Beam's in-process runner keeps in memory every PCollection that one stage writes
    # and a later one reads. Train rows read once and used by both the analysis and the
    # transform would be such a PCollection (the transform waits for the analysis' result as a
    # side input): all the decoded rows held at once. So the rows are read twice, streamed each
    # time (TFT's deep copy, as TFX's Transform does; also for an analysis phase > 0), and never
    # go through a Flatten (the runner materializes every Flatten input).
    with (beam.Pipeline(options=pipeline_options(cfg, step="transform")) as p,
          tft_beam.Context(temp_dir=str(temp_dir), use_deep_copy_optimization=True)):
        raw = {"eval": p | "Readeval" >> sources["eval"].BeamSource()}
        if parts is None:
            (train_xf, _), transform_fn = (
                (p | "Readtrain" >> sources["train"].BeamSource(), adapter)
                | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                    preprocessing_fn, output_record_batches=True))
        else:
            # The parts to analyze are read on their own; the transform reads every train file
            # once more (no Flatten of the parts' reads, nothing kept between the two).
            part_rows = {i: p | f"Readtrain[{i}]" >> source(parts[i].files).BeamSource()
                         for i in analyzed}
            from_cache = [i for i in range(len(parts)) if i not in part_rows]
            # One Create of every cached accumulator, picked apart by fused FlatMaps: a Create
            # per (part, entry) would add a Beam stage each (6 spans x 12 analyzers here).
            accumulators = p | "CachedAccumulators" >> beam.Create(
                [(i, entry, value) for i in from_cache
                 for entry, values in sorted(cached[i].items()) for value in values],
                reshuffle=False)
            input_cache = {
                keys[i]: tft_beam.analyzer_cache.DatasetCache({
                    entry: accumulators | f"Cache[{i}][{j}]" >> beam.FlatMap(
                        _pick_accumulator, i, entry)
                    for j, entry in enumerate(sorted(cached[i]))}, None)
                for i in from_cache}
            transform_fn, output_cache = (
                ({keys[i]: part_rows.get(i) for i in range(len(parts))}, input_cache, adapter)
                | "Analyze" >> tft_beam.AnalyzeDatasetWithCache(preprocessing_fn))
            for i in analyzed:
                _write_part_cache(output_cache[keys[i]], out / "cache" / f"{i}.json", i)
            train_xf, _ = (
                ((p | "Readtrain" >> sources["train"].BeamSource(), adapter), transform_fn)
                | "TransformTrain" >> tft_beam.TransformDataset(output_record_batches=True))
        eval_xf, _ = (
            ((raw["eval"], sources["eval"].TensorAdapterConfig()), transform_fn)
            | "TransformEval" >> tft_beam.TransformDataset(output_record_batches=True))
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(str(out / GRAPH_DIR))
        for split, data in (("train", train_xf), ("eval", eval_xf)):
            _ = (data
                 | f"Encode{split}" >> beam.FlatMap(_encode_canonical)
                 | f"Write{split}" >> beam.io.WriteToTFRecord(
                     str(out / "shards" / split / "part"), file_name_suffix=".tfrecord"))
    shutil.rmtree(temp_dir, ignore_errors=True)
    # Serving parses raw examples with the raw schema kept beside the graph (TFX's layout).
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                               str(out / GRAPH_DIR / tft.TFTransformOutput.RAW_METADATA_DIR))
    return analyzed


def _pick_accumulator(item: tuple[int, bytes, bytes], part: int, entry: bytes) -> list[bytes]:
    """The value of a cached (part, entry, value) triple if it is of ``part`` and ``entry``."""
    return [item[2]] if item[0] == part and item[1] == entry else []


def _parts_to_read(preprocessing_fn, adapter, keys, cached: dict[int, Any]) -> set[int]:
    """The parts whose rows the analysis needs: those without accumulators, and any TFT still
    needs the rows of (an analyzer without cache support, or a cache entry it lacks)."""
    from tensorflow_transform.beam import analysis_graph_builder
    from tensorflow_transform.beam.analyzer_cache import DatasetCache
    from tfx_bsl.tfxio import tensor_adapter

    if not cached:
        return set(range(len(keys)))
    specs = tensor_adapter.TensorAdapter(adapter).OriginalTypeSpecs()
    needed = analysis_graph_builder.get_analysis_dataset_keys(
        preprocessing_fn, specs, keys,
        {keys[i]: DatasetCache(dict.fromkeys(entries, True), None)
         for i, entries in cached.items()}, force_tf_compat_v1=False)
    return {keys.index(k) for k in needed} | (set(range(len(keys))) - set(cached))


def _write_part_cache(dataset_cache, target: Path, index: int) -> None:
    """Gathers one part's cache entries (TFT's encoded accumulators) into one JSON file."""
    import apache_beam as beam

    def write(pairs: list[tuple[bytes, bytes]]) -> None:
        entries: dict[str, list[str]] = {}
        for key, value in pairs:
            entries.setdefault(base64.b64encode(key).decode(), []).append(
                base64.b64encode(value).decode())
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target, {"entries": entries})

    tagged = [pcoll | f"Tag[{index}][{j}]" >> beam.Map(lambda v, k=key: (k, v))
              for j, (key, pcoll) in enumerate(sorted(dataset_cache.cache_dict.items()))]
    _ = (tagged | f"FlattenCache[{index}]" >> beam.Flatten()
         | f"GatherCache[{index}]" >> beam.combiners.ToList()
         | f"WriteCache[{index}]" >> beam.Map(write))


def transform(cfg: PipelineConfig, home: Path, ctx: RunContext,
              snapshot_uris: list[str], force: bool = False,
              analyzer_cache: bool = False) -> dict[str, Any]:
    """Runs the transform step; see the module docstring for what it writes.

    Args:
        cfg: the pipeline config (``transform_module``, ``beam``, ``columns``, ``label``).
        home: artifact store root.
        ctx: who runs the step (unused here beyond lineage, kept for the step signature).
        snapshot_uris: accepted snapshots; their train splits are analyzed together.
        force: transform again even when an identical transform exists: the new transform is
            ``<id>-r<N>`` beside the old one, which stays untouched.
        analyzer_cache: analyze per span (or per snapshot) and reuse the accumulators of parts
            analyzed before (see the module docstring); also on when the config sets
            ``transform_analyzer_cache``. Off by default: at Adult's size the
            per-span datasets cost more fixed Beam/TFT work than the analysis they save
            (benchmarks/results/transform_incremental.md); off, the train rows are analyzed as
            one dataset with nothing read from or written to the cache.

    Returns:
        transform_id, transform_uri, transform_graph_uri, transformed{train,eval} (file
        patterns), sha256 (of the graph folder's and data files' hashes), rows{train,eval},
        seconds, reused, inputs, outputs. The data files are byte-stable across runners; the
        graph's saved_model.pb is not (TensorFlow numbers its traced functions per process), so
        compare transforms by their data hashes, vocabulary and schema, not by the graph hash.
    """
    del ctx
    if not snapshot_uris:
        raise PipelineError("transform needs at least one snapshot URI (snapshot_uris is empty)")
    inputs = [_snapshot_input(u) for u in snapshot_uris]
    tid = transform_id(cfg, inputs)
    final = store.path(home, store.Kind.TRANSFORM, cfg.name, tid)
    if (final / RESULT_FILE).is_file() and not force:
        log.info("transform %s exists for these inputs: reusing %s", tid, final)
        return {**read_json(final / RESULT_FILE), "reused": True}
    if force and final.exists():  # never over an artifact lineage may point to: a new revision
        final = store.revision(final)
        tid = final.name

    started = time.perf_counter()
    analyzer_cache = analyzer_cache or cfg.transform_analyzer_cache
    parts = analysis_parts(snapshot_uris) if analyzer_cache else None
    cached: dict[int, dict[bytes, list[bytes]]] = {}
    entries: list[Path] = []
    damaged: set[int] = set()
    for i, part in enumerate(parts or []):
        entry = store.path(home, store.Kind.ANALYZER_CACHE, cfg.name, cache_key(cfg, part))
        entries.append(entry)
        got = read_cache_entry(entry)
        if got is not None:
            cached[i] = got
        elif entry.exists():
            damaged.add(i)
    with publish(final) as tmp:
        analyzed = run_beam(cfg, [split_pattern(u, "train") for u in snapshot_uris],
                            [split_pattern(u, "eval") for u in snapshot_uris], tmp,
                            parts=parts, cached=cached)
        analysis = None
        if parts is not None:
            for i in analyzed:
                doc = read_json(tmp / "cache" / f"{i}.json")
                write_cache_entry(entries[i], parts[i], {
                    base64.b64decode(k): [base64.b64decode(v) for v in values]
                    for k, values in doc["entries"].items()}, tid, replace=i in damaged)
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            analysis = [{"snapshot": part.snapshot, "span": part.span, "rows": part.rows,
                         "records_sha256": part.records_sha256,
                         "cache": ("corrupt" if i in damaged else "miss") if i in analyzed
                         else "hit", "cache_uri": str(entries[i])}
                        for i, part in enumerate(parts)]
        rows, hashes = {}, {}
        for split in SPLITS:
            (tmp / DATA_DIR / split).mkdir(parents=True)
            rows[split], hashes[split] = _sort_records(
                str(tmp / "shards" / split / "part*"), tmp / DATA_DIR / split / DATA_FILE)
        shutil.rmtree(tmp / "shards")
        result = _result(cfg, final, tmp, tid, inputs, rows, hashes,
                         seconds=round(time.perf_counter() - started, 2))
        result["analysis"] = analysis
        write_json_atomic(tmp / RESULT_FILE, result)
    log.info("transform %s written to %s (%s)", tid, final, rows)
    return {**result, "reused": False}


def _result(cfg: PipelineConfig, final: Path, tmp: Path, tid: str, inputs: list[Artifact],
            rows: dict[str, int], hashes: dict[str, str], seconds: float) -> dict[str, Any]:
    graph_sha = sha256_tree(tmp / GRAPH_DIR)
    patterns = {s: str(final / DATA_DIR / s / "data-*.tfrecord") for s in SPLITS}
    graph_size = sum(f.stat().st_size for f in (tmp / GRAPH_DIR).rglob("*") if f.is_file())
    outputs = [artifact(ArtifactKind.TRANSFORM_GRAPH, final / GRAPH_DIR, graph_sha, graph_size,
                               module=cfg.transform_module)]
    outputs += [artifact(ArtifactKind.TRANSFORMED_EXAMPLES, final / DATA_DIR / s / DATA_FILE,
                                hashes[s], (tmp / DATA_DIR / s / DATA_FILE).stat().st_size,
                                split=s, rows=rows[s]) for s in SPLITS]
    return {
        "transform_id": tid,
        "transform_uri": str(final),
        "transform_graph_uri": str(final / GRAPH_DIR),
        "transformed": patterns,
        "sha256": sha256_json({"graph": graph_sha, **hashes}),
        "rows": rows,
        "seconds": seconds,
        "inputs": inputs,
        "outputs": outputs,
    }
