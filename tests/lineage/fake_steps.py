"""Small synthetic steps for the lineage store tests: real files, real hashes, no ML stack.

They follow docs/CONTRACTS.md (``fn(cfg, home, ctx, **kwargs) -> dict`` with ``inputs`` and
``outputs``) and hash artifacts the way the real producers do (``sha256_file`` for a file,
``sha256_tree`` for a folder), so the store, the queries and ``verify`` see what they see in
production. Tests point ``runner.STEPS`` at them.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
from pathlib import Path

from pipelines.errors import DataRejected, NotPromoted
from pipelines.hashing import sha256_file, sha256_json, sha256_tree
from pipelines.results import artifact
from pipelines.store import write_json_atomic

STEPS = {name: f"tests.lineage.fake_steps:{name}" for name in (
    "ingest", "validate", "transform", "train", "evaluate", "promote", "boom", "killed")}
FAILED_EXPECTATION = "expect_column_values_to_not_be_null(age): 12 of 100 rows unexpected"


def _root(home, kind, cfg, name) -> Path:
    return Path(home) / kind / cfg.name / name


def ingest(cfg, home, ctx, files: list[str], span: dt.date | None = None) -> dict:
    info = [{"uri": str(Path(f).resolve()), "sha256": sha256_file(f), "size": Path(f).stat().st_size,
             "rows": len(Path(f).read_text().splitlines())} for f in files]
    sid = sha256_json(sorted(i["sha256"] for i in info))[:16]
    out = _root(home, "snapshots", cfg, sid)
    if not out.exists():
        (out / "train").mkdir(parents=True)
        (out / "train" / "data.txt").write_text("".join(Path(f).read_text() for f in files))
        write_json_atomic(out / "provenance.json", {"files": info, "span": span})
    rows = sum(i["rows"] for i in info)
    return {"snapshot_id": sid, "uri": str(out), "sha256": sha256_tree(out), "rows": {"total": rows},
            "inputs": [artifact("SourceFile", i["uri"], i["sha256"], i["size"], rows=i["rows"])
                       for i in info],
            "outputs": [artifact("Snapshot", out, sha256_tree(out), None, rows=rows)]}


def validate(cfg, home, ctx, snapshot_uri: str, reject: bool = False) -> dict:
    vdir = Path(f"{snapshot_uri}.validation")
    status = "rejected" if reject else "accepted"
    failures = [FAILED_EXPECTATION] if reject else []
    if not vdir.exists():
        vdir.mkdir()
        write_json_atomic(vdir / "result.json", {"status": status, "failures": failures})
    result = {"status": status, "snapshot_uri": snapshot_uri, "failures": failures,
              "expectations": {"run": 10, "failed": len(failures)},
              "inputs": [artifact("Snapshot", snapshot_uri, sha256_tree(snapshot_uri))],
              "outputs": [artifact("ValidationResult", vdir, sha256_tree(vdir), status=status)]}
    if reject:
        raise DataRejected(f"snapshot {snapshot_uri} rejected: {FAILED_EXPECTATION}", result)
    return result


def transform(cfg, home, ctx, snapshot_uris: list[str], hash_data_only: bool = False) -> dict:
    """``hash_data_only`` records the input snapshot by its data file alone, unlike ingest."""
    out = _root(home, "transforms", cfg, sha256_json(snapshot_uris)[:16])
    (out / "graph").mkdir(parents=True, exist_ok=True)
    (out / "graph" / "saved_model.pb").write_text(f"graph of {snapshot_uris}")
    (out / "train.tfrecord").write_text("transformed")
    return {"transform_uri": str(out),
            "inputs": [artifact("Snapshot", u, sha256_file(Path(u) / "train" / "data.txt")
                                if hash_data_only else sha256_tree(u)) for u in snapshot_uris],
            "outputs": [artifact("transform_graph", out / "graph", sha256_tree(out / "graph")),
                        artifact("transformed_examples", out / "train.tfrecord",
                                 sha256_file(out / "train.tfrecord"), split="train", rows=7)]}


def train(cfg, home, ctx, transform_uri: str, started_on: dt.date | None = None,
          seed: int = 1) -> dict:
    graph = Path(transform_uri) / "graph"
    out = _root(home, "models", cfg, f"m{seed}-{sha256_tree(graph)[:8]}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "saved_model.pb").write_text(f"model {seed} from {graph}")
    return {"model_uri": str(out), "metrics": {"auc": 0.91},
            "inputs": [artifact("TransformGraph", graph, sha256_tree(graph))],
            "outputs": [artifact("Model", out, sha256_tree(out), auc=0.91)]}


def evaluate(cfg, home, ctx, model_uri: str, snapshot_uris: list[str], blessed: bool = True,
             baseline_uri: str | None = None) -> dict:
    out = Path(model_uri).parent.parent.parent / "evaluations" / cfg.name / Path(model_uri).name
    out.mkdir(parents=True, exist_ok=True)
    reasons = ["overall AUC 0.910 >= 0.900"] if blessed else ["AUC 0.880 < floor 0.900"]
    write_json_atomic(out / "blessing.json", {"blessed": blessed, "reasons": reasons})
    inputs = [artifact("Model", model_uri, sha256_tree(model_uri))]
    inputs += [artifact("Snapshot", u, sha256_tree(u)) for u in snapshot_uris]
    if baseline_uri:
        inputs.append(artifact("ModelVersion", baseline_uri, sha256_tree(baseline_uri),
                               role="baseline"))
    return {"evaluation_uri": str(out), "blessed": blessed, "reasons": reasons,
            "baseline": {"uri": baseline_uri} if baseline_uri else None, "metrics": {"auc": 0.91},
            "inputs": inputs,
            "outputs": [artifact("Evaluation", out, sha256_tree(out), blessed=blessed)]}


def promote(cfg, home, ctx, model_uri: str, evaluation_uri: str, version: int) -> dict:
    blessing = Path(evaluation_uri) / "blessing.json"
    inputs = [artifact("Model", model_uri, sha256_tree(model_uri)),
              artifact("Evaluation", evaluation_uri, sha256_tree(evaluation_uri))]
    if '"blessed": false' in blessing.read_text():
        raise NotPromoted("model not blessed", {"promoted": False, "reasons": ["not blessed"],
                                                "inputs": inputs, "outputs": []})
    dest = Path(home) / "registry" / cfg.name / str(version)
    if not dest.exists():
        shutil.copytree(model_uri, dest)
    return {"promoted": True, "version": version, "registry_uri": str(dest),
            "previous_version": version - 1 or None, "reasons": ["blessed; infra check passed"],
            "inputs": inputs,
            "outputs": [artifact("ModelVersion", dest, sha256_tree(dest), version=version)]}


def boom(cfg, home, ctx, snapshot_uri: str) -> dict:
    raise RuntimeError("disk full while writing the transform")


def killed(cfg, home, ctx, snapshot_uri: str) -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}
