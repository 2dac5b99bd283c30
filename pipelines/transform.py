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
into a single file. That last pass holds one split in memory: fine for tens of MB; a far larger
dataset would keep Beam's shards and hash them order-independently instead. The
``transform_id`` is the sha256 of the input snapshots, the transform module's source and the
config parts it reads, so re-running on the same inputs reuses the artifact.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import shutil
import time
import tokenize
from pathlib import Path
from typing import Any

from pipelines import store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_file, sha256_json, sha256_tree
from pipelines.results import Artifact, ArtifactKind, artifact
from pipelines.snapshots import SPLITS, provenance, split_pattern, validation_status
from pipelines.store import publish, read_json, write_json_atomic

log = logging.getLogger(__name__)

GRAPH_DIR = "transform_graph"
DATA_DIR = "transformed"
RESULT_FILE = "transform.json"
DATA_FILE = "data-00000-of-00001.tfrecord"


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


def transform_id(cfg: PipelineConfig, inputs: list[Artifact]) -> str:
    """Content address of a transform: input data, transform code and the config it reads."""
    return sha256_json({
        "snapshots": [i["properties"]["data_sha256"] for i in inputs],
        "module": cfg.transform_module,
        "module_sha256": _module_sha256(cfg),
        "columns": [c.model_dump() for c in cfg.columns],
        "label": cfg.label.model_dump(),
        "missing_marker": cfg.source.missing_marker,
        # the installed version, without importing TF Transform (seconds of TensorFlow imports)
        "tft": importlib.metadata.version("tensorflow-transform"),
    })[:16]


def _sort_records(shard_pattern: str, out_file: Path) -> tuple[int, str]:
    """Rewrites Beam's shards as one file sorted by record sha256; returns (count, file sha256)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(shard_pattern))
    records = [r for batch in tf.data.TFRecordDataset(files).batch(8192) for r in batch.numpy()]
    records.sort(key=lambda r: hashlib.sha256(r).digest())
    with tf.io.TFRecordWriter(str(out_file)) as writer:
        for r in records:
            writer.write(r)
    return len(records), sha256_file(out_file)


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
             out: Path) -> None:
    """Analyze on train, transform train and eval; writes the graph and sharded TFRecords."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
    from tfx_bsl.public import tfxio

    from pipelines.beam_options import pipeline_options
    from pipelines.snapshots import raw_feature_spec

    preprocessing_fn = load_preprocessing_fn(cfg)
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec(cfg))
    sources = {split: tfxio.TFExampleRecord(patterns, schema=schema,
                                            telemetry_descriptors=["pipelines", "transform"])
               for split, patterns in (("train", train_patterns), ("eval", eval_patterns))}
    temp_dir = out / "tmp"
    with (beam.Pipeline(options=pipeline_options(cfg, step="transform")) as p,
          tft_beam.Context(temp_dir=str(temp_dir))):
        raw = {split: p | f"Read{split}" >> src.BeamSource() for split, src in sources.items()}
        (train_xf, metadata), transform_fn = (
            (raw["train"], sources["train"].TensorAdapterConfig())
            | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                preprocessing_fn, output_record_batches=True))
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


def transform(cfg: PipelineConfig, home: Path, ctx: RunContext,
              snapshot_uris: list[str], force: bool = False) -> dict[str, Any]:
    """Runs the transform step; see the module docstring for what it writes.

    Args:
        cfg: the pipeline config (``transform_module``, ``beam``, ``columns``, ``label``).
        home: artifact store root.
        ctx: who runs the step (unused here beyond lineage, kept for the step signature).
        snapshot_uris: accepted snapshots; their train splits are analyzed together.
        force: transform again even when an identical transform exists: the new transform is
            ``<id>-r<N>`` beside the old one, which stays untouched.

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
    with publish(final) as tmp:
        run_beam(cfg, [split_pattern(u, "train") for u in snapshot_uris],
                 [split_pattern(u, "eval") for u in snapshot_uris], tmp)
        rows, hashes = {}, {}
        for split in SPLITS:
            (tmp / DATA_DIR / split).mkdir(parents=True)
            rows[split], hashes[split] = _sort_records(
                str(tmp / "shards" / split / "part*"), tmp / DATA_DIR / split / DATA_FILE)
        shutil.rmtree(tmp / "shards")
        result = _result(cfg, final, tmp, tid, inputs, rows, hashes,
                         seconds=round(time.perf_counter() - started, 2))
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
