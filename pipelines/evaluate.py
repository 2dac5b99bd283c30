"""Step `evaluate`: TFMA audit of the candidate against the production model, slice by slice.

Called by ``runner.run_step("evaluate", ...)`` (the CLI ``pipelines evaluate`` and the DAG task).
Writes one immutable folder::

    <home>/evaluations/<pipeline>/<evaluation_id>/
        tfma/              TFMA's own output (eval_config.json, metrics, plots)
        evaluation.json    the record: inputs, per-slice metrics, curves, checks, blessing

The baseline is the model behind the registry's ``production`` alias at evaluation time (none for
the first model). Candidate and baseline are scored on the same rows in one TFMA run over the
snapshot eval splits and the golden set; see :mod:`pipelines.eval_tfma` and
:mod:`pipelines.blessing` for the metrics and the gates.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from pipelines import blessing, registry, store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext, utcnow
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.snapshots import (
    GOLDEN_SPLIT,
    provenance,
    split_pattern,
    validation_dir,
    validation_status,
)
from pipelines.store import publish, read_json, write_json_atomic

log = logging.getLogger(__name__)
RECORD = "evaluation.json"


def saved_model_dir(model_uri: str | Path) -> Path:
    """The SavedModel folder of a model URI: the folder itself or its ``saved_model/``."""
    p = Path(model_uri)
    for cand in (p, p / "saved_model"):
        if (cand / "saved_model.pb").is_file():
            return cand
    raise PipelineError(f"{model_uri} holds no saved_model.pb (nor saved_model/saved_model.pb); "
                        "pass the model_uri that `pipelines train` printed")


def _dataset(uri: str, split: str, kind: str) -> tuple[str, dict[str, Any]]:
    pattern = split_pattern(uri, split)
    if not list(Path(uri, split).glob("data-*.tfrecord")):
        raise PipelineError(f"{kind} {uri} has no {split}/data-*.tfrecord: pass a snapshot "
                            f"written by `pipelines ingest`{' --golden' if kind == 'golden set' else ''}")
    prov = provenance(uri) if (Path(uri) / "provenance.json").is_file() else {}
    # sha256 as ingest records the snapshot artifact (the whole folder), so lineage links them.
    return pattern, {"uri": str(uri), "split": split, "snapshot_id": prov.get("snapshot_id"),
                     "sha256": sha256_tree(uri), "content_sha256": prov.get("content_sha256")}


def check_data(uri: str, golden: bool, sha256: str) -> None:
    """Refuses data that is not an accepted snapshot (the golden set: a golden snapshot not
    rejected), naming it and the fix. ``sha256`` is the snapshot's hash now: the accepted
    validation must be of these very bytes.

    Raises:
        PipelineError: any folder that is not such a snapshot.
    """
    what = "golden set" if golden else "snapshot"
    if not (Path(uri) / "provenance.json").is_file():
        raise PipelineError(f"{what} {uri} is not a snapshot written by `pipelines ingest` (no "
                            "provenance.json); evaluate reads only ingested, validated snapshots")
    is_golden = bool(provenance(uri).get("golden"))
    if is_golden != golden:
        raise PipelineError(
            f"{uri} is {'a golden' if is_golden else 'not a golden'} snapshot: pass it as "
            f"{'--golden' if is_golden else '--snapshot'}")
    status = validation_status(uri)
    if golden:
        if status == "rejected":
            raise PipelineError(f"golden set {uri} was rejected by validation: fix the golden "
                                "file in the landing area and ingest it again")
        return
    name = Path(uri).name
    if status != "accepted":
        state = "was rejected by validation" if status == "rejected" else "was never validated"
        fix = ("ingest fixed data and validate the new snapshot" if status == "rejected" else
               f"run `pipelines validate <config> --snapshot {name}` first")
        raise PipelineError(f"snapshot {uri} {state}: evaluate reads only accepted snapshots; "
                            f"{fix}")
    validated = read_json(validation_dir(uri) / "result.json")
    hashes = {i.get("sha256") for i in validated.get("inputs") or []
              if i.get("kind") == ArtifactKind.SNAPSHOT and (i.get("properties") or {}).get(
                  "role") != "drift_baseline"}
    if sha256 not in hashes:
        raise PipelineError(f"snapshot {uri} changed after it was validated (it hashes to "
                            f"{sha256[:12]} now, the accepted validation read "
                            f"{', '.join(sorted(h[:12] for h in hashes if h)) or 'unknown bytes'}); "
                            "ingest the data again")


def load(evaluation_uri: str | Path) -> dict[str, Any]:
    path = Path(evaluation_uri) / RECORD
    if not path.is_file():
        raise PipelineError(f"{evaluation_uri} is not an evaluation (no {RECORD}); pass the "
                            "evaluation_uri that `pipelines evaluate` printed")
    return read_json(path)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The overall row of each dataset, per model: the small `metrics` of the step result (a
    metric undefined there is None; the record's rows say why)."""
    return {r["dataset"]: {k: r[k] for k in ("candidate", "baseline") if k in r}
            for r in rows if not r["slice"]}


def evaluate(cfg: PipelineConfig, home: Path, ctx: RunContext, model_uri: str,
             snapshot_uris: list[str], golden_uri: str | None = None,
             threshold_overrides: dict[str, float] | None = None) -> dict[str, Any]:
    """Audits ``model_uri`` on the snapshots' eval splits and the golden set; see module doc."""
    from pipelines import eval_tfma

    thresholds = blessing.effective_thresholds(cfg, threshold_overrides)
    if not snapshot_uris and not golden_uri:
        raise PipelineError("nothing to evaluate on: pass at least one snapshot or a golden set")
    candidate = saved_model_dir(model_uri)
    datasets: dict[str, list[str]] = {}
    data_info: dict[str, Any] = {"eval": [], "golden": None}
    snapshot_uris = [str(Path(u).resolve()) for u in snapshot_uris]
    golden_uri = str(Path(golden_uri).resolve()) if golden_uri else None
    for uri in snapshot_uris:
        pattern, info = _dataset(uri, "eval", "snapshot")
        check_data(uri, False, info["sha256"])
        datasets.setdefault("eval", []).append(pattern)
        data_info["eval"].append(info)
    if golden_uri:
        pattern, data_info["golden"] = _dataset(golden_uri, GOLDEN_SPLIT, "golden set")
        check_data(golden_uri, True, data_info["golden"]["sha256"])
        datasets["golden"] = [pattern]
    baseline = registry.production(cfg, home)
    baseline_hashes = registry.recorded_hashes(cfg, home, baseline["version"]) if baseline else {}
    baseline_dir = saved_model_dir(baseline["uri"]) if baseline else None
    model_sha = sha256_tree(candidate)
    evaluation_id = f"{utcnow().replace(':', '').replace('-', '')[:15]}-{uuid.uuid4().hex[:8]}"
    final = store.path(home, store.Kind.EVALUATION, cfg.name, evaluation_id)
    log.info("evaluating %s against %s on %s", candidate,
             f"production v{baseline['version']}" if baseline else "no baseline", sorted(datasets))
    with publish(final) as tmp:
        start = time.perf_counter()
        # Inside a long-lived process (`pipelines run`, after training) the heap left by
        # TensorFlow makes every full garbage collection walk millions of objects, and TFMA's
        # per-example work triggers many: freezing what exists now takes it out of the collector's
        # scans for the run (issue 11). Unfrozen after, so it is collectable again.
        gc.freeze()
        try:
            eval_tfma.run(cfg, datasets, str(candidate),
                          str(baseline_dir) if baseline_dir else None, tmp / "tfma")
        finally:
            gc.unfreeze()
        tfma_seconds = time.perf_counter() - start
        rows = eval_tfma.load_rows(cfg, tmp / "tfma")
        curves = eval_tfma.load_curves(cfg, tmp / "tfma")
        blessed, reasons, checks = blessing.decide(cfg, rows, thresholds, baseline is not None)
        record: dict[str, Any] = {
            "evaluation_id": evaluation_id, "pipeline": cfg.name, "created_at": utcnow(),
            "run_id": ctx.run_id, "config_sha256": cfg.sha256,
            "model": {"uri": str(model_uri), "saved_model": str(candidate), "sha256": model_sha},
            "baseline": baseline, "data": data_info,
            "task": cfg.task, "label": cfg.label.model_dump(mode="json"),
            "decision_threshold": cfg.evaluation.decision_threshold,
            "min_slice_size": cfg.evaluation.min_slice_size, "slices": cfg.evaluation.slices,
            "thresholds": thresholds, "threshold_overrides": threshold_overrides or {},
            "gates": [vars(g) for g in cfg.gates],
            "fairness": (cfg.evaluation.fairness.model_dump()
                         if cfg.evaluation.fairness is not None else None),
            "blessed": blessed, "reasons": reasons, "checks": checks,
            "metrics": summary(rows), "rows": rows, "curves": curves,
            "timing": {"tfma_seconds": round(tfma_seconds, 2)},
        }
        write_json_atomic(tmp / RECORD, record)
    log.info("evaluation %s: %s (%d checks, TFMA %.1f s)", evaluation_id,
             "blessed" if blessed else "NOT blessed: " + "; ".join(reasons), len(checks),
             tfma_seconds)
    # the SavedModel folder, as train records it: the URI whose tree hash model_sha is
    inputs = [artifact(ArtifactKind.MODEL, candidate, model_sha, None, role="candidate")]
    if baseline:
        inputs.append(artifact(ArtifactKind.MODEL_VERSION, baseline["uri"],
                               baseline_hashes.get("sha256"), None, role="baseline",
                               version=baseline["version"],
                               model_sha256=baseline_hashes.get("model_sha256")))
    inputs += [artifact(ArtifactKind.SNAPSHOT, d["uri"], d["sha256"], None, split="eval",
                        snapshot_id=d["snapshot_id"]) for d in data_info["eval"]]
    if data_info["golden"]:
        g = data_info["golden"]
        inputs.append(artifact(ArtifactKind.SNAPSHOT, g["uri"], g["sha256"], None, split=GOLDEN_SPLIT,
                               snapshot_id=g["snapshot_id"], golden=True))
    return {
        "evaluation_uri": str(final), "evaluation_id": evaluation_id, "blessed": blessed,
        "reasons": reasons, "checks": checks, "baseline": baseline, "metrics": record["metrics"],
        "thresholds": thresholds, "tfma_seconds": record["timing"]["tfma_seconds"],
        "inputs": inputs,
        "outputs": [artifact(ArtifactKind.MODEL_EVALUATION, final, sha256_tree(final), None,
                             blessed=blessed, evaluation_id=evaluation_id)],
    }
