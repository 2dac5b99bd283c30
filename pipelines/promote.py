"""Step `promote`: push a blessed candidate that passes the infra check; else say why not.

Called by ``runner.run_step("promote", ...)`` (the CLI ``pipelines promote`` and the DAG task),
which hands it the open lineage ``execution``: the promotion is recorded there before the
``production`` alias moves (see :mod:`pipelines.registry`).

What is promoted is exactly what was evaluated. The evaluation is resolved through the lineage
store, never taken on the word of a file: a completed ``evaluate`` execution of this pipeline must
have written the evaluation folder with the bytes it holds now (a hand-written or edited
``evaluation.json`` has no such record), its candidate input must be this model's hash, its data
must be accepted snapshots, its baseline must still be production, and it must be younger than
``promotion.evaluation_max_age_hours``. Then: refuse if not blessed, or if the candidate is
production already; copy the model into the registry, where the copy must hash to the evaluated
model; run the infra check on that copy (``promotion.infra_check_examples`` examples of the golden
set or the eval split) in a fresh process; record; move the alias. (Evaluate runs that check on
the trained model meanwhile and keeps it, :func:`pipelines.infra_check.keep`; promote takes it,
once and within ``infra_check.KEPT_FOR_S``, only for the same SavedModel bytes and arguments.)
"Not promoted" is raised as :class:`NotPromoted` (exit code 3) whose ``result`` holds the full
record and the reasons.

Under ``promotion.policy: shadow`` the alias moved is ``shadow``, not ``production``: the result
says ``promoted: False, shadow: True`` with the version, production does not change, and the
monitor DAG decides later (:mod:`pipelines.shadow`). A newer shadow replaces an undecided one (the
reasons say which). With no model in production there is nothing to judge a shadow against, so the
first blessed model goes to production directly (the reasons say so).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from pipelines import evaluate as evaluation_lib
from pipelines import infra_check, registry, store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext
from pipelines.errors import NotPromoted, PipelineError, UsageError
from pipelines.hashing import sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.snapshots import provenance, validation_status

log = logging.getLogger(__name__)


def _examples_pattern(cfg: PipelineConfig, record: dict[str, Any]) -> str:
    golden = record["data"].get("golden")
    return infra_check.examples_pattern(cfg, golden["uri"] if golden else None,
                                        record["data"]["eval"][0]["uri"])


def evidence_problems(cfg: PipelineConfig, home: Path, evaluation_dir: Path, evaluation_sha: str,
                      record: dict[str, Any], model_sha: str,
                      now: dt.datetime | None = None) -> list[str]:
    """Why the evaluation at ``evaluation_dir`` cannot stand for this candidate (empty: it can).

    See the module doc for what is checked; every reason says what to do.
    """
    from pipelines.lineage import evidence
    from pipelines.lineage.store import LineageError

    rerun = f"run `pipelines evaluate configs/{cfg.name}.yaml --model <model>` and promote that"
    try:
        found = evidence.evaluation(home, cfg.name, str(evaluation_dir), evaluation_sha)
    except LineageError as exc:
        return [f"evaluation {evaluation_dir} cannot be checked against the lineage store: {exc}"]
    if found is None:
        return [f"evaluation {evaluation_dir} was not written by any recorded `evaluate` "
                f"execution of {cfg.name}: promote only trusts evaluations that the evaluate "
                f"step recorded in lineage; {rerun}"]
    if found["execution"] is None:
        return [f"evaluation {evaluation_dir} changed after the evaluate step recorded it (its "
                f"files hash to {evaluation_sha[:12]} now, lineage recorded "
                f"{', '.join(h[:12] for h in found['other_hashes'])}); {rerun}"]
    problems = []
    if record.get("pipeline") != cfg.name:
        problems.append(f"evaluation {evaluation_dir} belongs to pipeline "
                        f"{record.get('pipeline')!r}, not {cfg.name!r}")
    inputs = found["inputs"]
    candidates = [a for a in inputs if a["kind"] == ArtifactKind.MODEL]
    if [a["sha256"] for a in candidates] != [model_sha]:
        audited = ", ".join((a["sha256"] or "?")[:12] for a in candidates) or "no model"
        problems.append(f"evaluation {evaluation_dir} audited model sha256 {audited}, not this "
                        f"candidate (sha256 {model_sha[:12]}); {rerun}")
    for snap in (a for a in inputs if a["kind"] == ArtifactKind.SNAPSHOT):
        present = (Path(snap["uri"]) / "provenance.json").is_file()
        status = validation_status(snap["uri"]) if present else "missing"
        if present and provenance(snap["uri"]).get("golden"):
            if status == "rejected":
                problems.append(f"the golden set {snap['uri']} of this evaluation is {status}")
            continue
        accepted = status == "accepted" and evidence.accepted_validation(
            home, cfg.name, snap["uri"], snap["sha256"] or "")
        if not accepted:
            problems.append(
                f"evaluation {evaluation_dir} read snapshot {snap['uri']}, which is "
                f"{status or 'not validated'} now or has no accepted validation of these bytes in "
                f"lineage: only accepted snapshots count; run `pipelines validate configs/"
                f"{cfg.name}.yaml --snapshot {Path(snap['uri']).name}` and evaluate again")
    baseline = record.get("baseline")
    current = registry.production(cfg, home)
    was, now_v = (baseline or {}).get("version"), (current or {}).get("version")
    if was != now_v:
        problems.append(f"stale evaluation: it compared against production version {was}, but "
                        f"production is version {now_v} now; {rerun}")
    elif current is not None:
        recorded = [a["sha256"] for a in inputs if a["kind"] == ArtifactKind.MODEL_VERSION]
        want = registry.recorded_hashes(cfg, home, current["version"]).get("sha256")
        if want and recorded != [want]:
            problems.append(f"stale evaluation: its baseline is not the production version "
                            f"{current['version']} registered now (sha256 {want[:12]}); {rerun}")
    ended = found["ended"]
    max_age = dt.timedelta(hours=cfg.promotion.evaluation_max_age_hours)
    now = now or dt.datetime.now(dt.UTC)
    if ended is None or now - ended > max_age:
        problems.append(f"expired evaluation: recorded at {ended.isoformat() if ended else '?'}, "
                        f"more than promotion.evaluation_max_age_hours="
                        f"{cfg.promotion.evaluation_max_age_hours:g} ago; {rerun}")
    summary_blessed = (found["execution"]["summary"] or {}).get("blessed")
    if summary_blessed is not None and summary_blessed != record.get("blessed"):
        problems.append(f"evaluation {evaluation_dir} says blessed={record.get('blessed')} but "
                        f"lineage recorded blessed={summary_blessed}")
    return problems


def promote(cfg: PipelineConfig, home: Path, ctx: RunContext, model_uri: str,
            evaluation_uri: str, execution: Any = None) -> dict[str, Any]:
    """Promotes ``model_uri`` if its evaluation blessed it and it serves; see module doc.

    Raises:
        UsageError: called without a lineage execution (use ``runner.run_step``).
        NotPromoted: the evaluation cannot be trusted for this model, not blessed, already in
            production, the registry copy differs, infra check failed, or production moved.
    """
    if execution is None:
        raise UsageError("promote records its change in lineage before production moves: run it "
                         "through runner.run_step('promote', ...) (the CLI and the DAG do)")
    evaluation_dir = Path(evaluation_uri).resolve()
    record = evaluation_lib.load(evaluation_dir)
    model_dir = evaluation_lib.saved_model_dir(model_uri)
    model_sha = sha256_tree(model_dir)
    evaluation_sha = sha256_tree(evaluation_dir)
    baseline = record.get("baseline")
    result: dict[str, Any] = {
        "promoted": False, "version": None, "registry_uri": None,
        "previous_version": baseline["version"] if baseline else None,
        "reasons": [], "infra_check": None, "blessed": record.get("blessed"),
        "evaluation_uri": str(evaluation_dir), "model_sha256": model_sha,
        "inputs": [artifact(ArtifactKind.MODEL, model_dir, model_sha, None),
                   artifact(ArtifactKind.MODEL_EVALUATION, evaluation_dir, evaluation_sha, None,
                            blessed=record.get("blessed"))],
        "outputs": [],
    }

    def refuse(reasons: list[str], **extra: Any) -> NotPromoted:
        result.update(reasons=reasons, **extra)
        return NotPromoted("; ".join(reasons), result)

    problems = evidence_problems(cfg, home, evaluation_dir, evaluation_sha, record, model_sha)
    if problems:
        raise refuse(["evaluation refused: " + p for p in problems],
                     infra_check={"passed": None, "skipped": "evaluation refused"})
    if not record["blessed"]:
        raise refuse(["not blessed: " + r for r in record["reasons"]],
                     infra_check={"passed": None, "skipped": "model not blessed"})
    if cfg.promotion.policy == "approval":  # issue 12: only what a person approved goes out
        from pipelines import approval

        decision, why = approval.required(cfg, home, evaluation_dir)
        if decision is None:
            raise refuse([f"not approved: {why}"],
                         infra_check={"passed": None, "skipped": "not approved"})
        result["inputs"].append(decision)  # lineage: the decision is upstream of the version
    current = registry.production(cfg, home)
    if current and registry.recorded_hashes(cfg, home, current["version"]).get(
            "model_sha256") == model_sha:
        raise refuse([f"already in production: version {current['version']} of {cfg.name} is "
                      f"this very model (sha256 {model_sha[:12]}); no new version registered"],
                     already_in_production=True, version=current["version"],
                     registry_uri=current["uri"],
                     infra_check={"passed": None, "skipped": "already in production"})
    pattern = _examples_pattern(cfg, record)
    to_shadow = cfg.promotion.policy == "shadow" and current is not None
    result.update(shadow=False, alias="shadow" if to_shadow else "production")

    def check(folder: Path) -> dict[str, Any]:
        # push checked that the copy's SavedModel hashes to model_sha: a check of the same
        # bytes that evaluate ran and kept may stand for it
        result["infra_check"] = infra_check.check(
            folder, pattern, n=cfg.promotion.infra_check_examples, task=cfg.task,
            classes=cfg.label.classes, sha256=model_sha,
            kept=store.root(home, store.Kind.INFRA_CHECK, cfg.name))
        return result["infra_check"]

    def commit(pushed: dict[str, Any]) -> None:
        result.update(promoted=not to_shadow, shadow=to_shadow, version=pushed["version"],
                      registry_uri=pushed["registry_uri"],
                      previous_version=pushed["previous_version"],
                      reasons=_policy_notes(cfg, pushed))
        # The version folder as published (model bytes + registry.json), hashed as lineage verify
        # does; model_sha256 (the SavedModel alone) equals the trained model's hash. The history
        # entry is the registry state this promotion made, immutable.
        result["outputs"] = [
            artifact(ArtifactKind.MODEL_VERSION, pushed["registry_uri"], pushed["sha256"], None,
                     version=pushed["version"], alias=pushed["alias"],
                     model_sha256=pushed["model_sha256"]),
            artifact(ArtifactKind.REGISTRY_ALIASES, pushed["journal_uri"],
                     pushed["journal_sha256"], None,
                     action="shadow" if to_shadow else "promote")]
        execution.complete(result)

    try:
        registry.push(
            cfg, home, ctx, model_dir,
            expected_production=baseline["version"] if baseline else None,
            record={"model_uri": str(model_uri), "evaluation_uri": str(evaluation_dir),
                    "evaluation_id": record["evaluation_id"], "metrics": record["metrics"]},
            expected_sha256=model_sha, check=check, commit=commit,
            alias="shadow" if to_shadow else "production")
    except NotPromoted as exc:
        extra = {k: v for k, v in exc.result.items() if k != "infra_check"}
        raise refuse([str(exc)], **extra) from exc
    except PipelineError:
        raise
    log.info("%s %s as %s version %d (production before: %s)",
             "shadowed" if to_shadow else "promoted", model_uri, cfg.name, result["version"],
             result["previous_version"])
    return result


def _policy_notes(cfg: PipelineConfig, pushed: dict[str, Any]) -> list[str]:
    """What the policy made of a pushed version, for the report and lineage (empty under auto)."""
    notes = []
    if pushed["alias"] == "shadow":
        notes.append(f"shadow: version {pushed['version']} is scored beside production version "
                     f"{pushed['previous_version']} on the next {cfg.promotion.shadow_spans} "
                     "labelled span(s) by the monitor DAG, then promoted if no worse within "
                     "promotion.shadow_margins, else dropped (promotion.policy shadow)")
        if pushed.get("replaced_shadow") is not None:
            notes.append(f"it replaces the undecided shadow version {pushed['replaced_shadow']}")
    elif cfg.promotion.policy == "shadow":
        notes.append("promotion.policy shadow: no model was in production to judge a shadow "
                     "against, so this first blessed model went to production directly")
    if pushed.get("shadow_cleared"):
        c = pushed["shadow_cleared"]
        notes.append(f"the pending shadow version {c['version']} was cleared: {c['why']}")
    return notes


promote.records_lineage = True  # type: ignore[attr-defined]  # runner.run_step passes `execution`
