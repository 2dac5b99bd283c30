"""Step `promote`: push a blessed candidate that passes the infra check; else say why not.

Called by ``runner.run_step("promote", ...)`` (the CLI ``pipelines promote`` and the DAG task).

Order: read the evaluation record (it must be about this model), refuse if not blessed, run the
infra check in a fresh process on ``promotion.infra_check_examples`` examples of the golden set (or
the eval split: ``promotion.infra_check_source``), then :func:`pipelines.registry.push` with a
compare-and-swap on the ``production`` version the evaluation used as baseline. "Not promoted" is
raised as :class:`NotPromoted` (exit code 3) whose ``result`` holds the full record, so the
DAG and the report can show the reasons.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines import evaluate as evaluation_lib
from pipelines import infra_check, registry
from pipelines.config import PipelineConfig
from pipelines.context import RunContext
from pipelines.errors import NotPromoted, UsageError
from pipelines.hashing import sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.snapshots import GOLDEN_SPLIT, split_pattern

log = logging.getLogger(__name__)


def _examples_pattern(cfg: PipelineConfig, record: dict[str, Any]) -> str:
    """The infra check's examples: the configured source, the golden set falling back to eval."""
    if cfg.promotion.infra_check_source == "golden" and record["data"].get("golden"):
        return split_pattern(record["data"]["golden"]["uri"], GOLDEN_SPLIT)
    return split_pattern(record["data"]["eval"][0]["uri"], "eval")


def promote(cfg: PipelineConfig, home: Path, ctx: RunContext, model_uri: str,
            evaluation_uri: str) -> dict[str, Any]:
    """Promotes ``model_uri`` if its evaluation blessed it and it serves; see module doc.

    Raises:
        UsageError: the evaluation is about another model or another pipeline.
        NotPromoted: not blessed, infra check failed, or production moved since the evaluation.
    """
    record = evaluation_lib.load(evaluation_uri)
    model_dir = evaluation_lib.saved_model_dir(model_uri)
    model_sha = sha256_tree(model_dir)
    if record["pipeline"] != cfg.name:
        raise UsageError(f"evaluation {evaluation_uri} belongs to pipeline {record['pipeline']!r}, "
                         f"not {cfg.name!r}")
    if record["model"]["sha256"] != model_sha:
        raise UsageError(f"evaluation {evaluation_uri} audited model {record['model']['uri']} "
                         f"(sha256 {record['model']['sha256'][:12]}), not {model_uri} "
                         f"(sha256 {model_sha[:12]}): evaluate this model first")
    baseline = record.get("baseline")
    result: dict[str, Any] = {
        "promoted": False, "version": None, "registry_uri": None,
        "previous_version": baseline["version"] if baseline else None,
        "reasons": [], "infra_check": None, "blessed": record["blessed"],
        "evaluation_uri": str(evaluation_uri),
        "inputs": [artifact(ArtifactKind.MODEL, model_uri, model_sha, None),
                   artifact(ArtifactKind.MODEL_EVALUATION, evaluation_uri, None, None,
                            blessed=record["blessed"])],
        "outputs": [],
    }
    if not record["blessed"]:
        result["reasons"] = ["not blessed: " + r for r in record["reasons"]]
        result["infra_check"] = {"passed": None, "skipped": "model not blessed"}
        raise NotPromoted("; ".join(result["reasons"]), result)
    check = infra_check.check(model_dir, _examples_pattern(cfg, record),
                              n=cfg.promotion.infra_check_examples, task=cfg.task,
                              classes=cfg.label.classes)
    result["infra_check"] = check
    if not check.get("passed"):
        result["reasons"] = ["infra check failed: " + r for r in check.get("reasons", [])]
        raise NotPromoted("; ".join(result["reasons"]), result)
    try:
        pushed = registry.push(
            cfg, home, ctx, model_dir,
            expected_production=baseline["version"] if baseline else None,
            record={"model_uri": str(model_uri), "evaluation_uri": str(evaluation_uri),
                    "evaluation_id": record["evaluation_id"], "infra_check": check,
                    "metrics": record["metrics"]})
    except NotPromoted as exc:
        result["reasons"] = [str(exc)]
        raise NotPromoted(str(exc), result) from exc
    result.update(promoted=True, version=pushed["version"], registry_uri=pushed["registry_uri"],
                  previous_version=pushed["previous_version"])
    # The version folder as published (model bytes + version.json), hashed as lineage verify does;
    # model_sha256 (the SavedModel alone) equals the trained model's hash.
    result["outputs"] = [artifact(ArtifactKind.MODEL_VERSION, pushed["registry_uri"],
                                  sha256_tree(pushed["registry_uri"]), None,
                                  version=pushed["version"], alias="production",
                                  model_sha256=pushed["model_sha256"])]
    log.info("promoted %s as %s version %d (previous: %s)", model_uri, cfg.name, pushed["version"],
             pushed["previous_version"])
    return result
