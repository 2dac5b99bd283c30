"""The retraining chain: one function per DAG task, plus the whole chain in one process.

Called by the DAG tasks in dags/retrain.py (one function per task, each handed the small result of
its upstream tasks through XCom) and by ``pipelines run`` (:func:`run_chain`). Every function loads
the config, calls ``runner.run_step`` (which records lineage) and returns a small JSON-serialisable
dict: URIs, hashes, counts, never data. Nothing heavy is imported here; the steps import their own
stack when they run. No Airflow import.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import runner
from pipelines.config import PipelineConfig, load_config
from pipelines.context import RunContext
from pipelines.errors import NotPromoted
from pipelines.params import resolve_params
from pipelines.results import (
    Evaluated,
    EvaluateResult,
    Ingested,
    IngestResult,
    Promoted,
    PromoteResult,
    Reported,
    ReportResult,
    Trained,
    TrainResult,
    Transformed,
    TransformResult,
    Validated,
    ValidateResult,
)
from pipelines.store import resolve_home

if TYPE_CHECKING:
    from pipelines import infra_check

log = logging.getLogger("pipelines.flow")

TASKS = ("ingest", "validate", "transform", "train", "evaluate", "promote", "report")


def _setup(config_path: str | Path, home: str | Path | None) -> tuple[PipelineConfig, Path]:
    return load_config(config_path), resolve_home(home)


def _run(step: str, cfg: PipelineConfig, home: Path, ctx: RunContext, force: bool = False,
         **kwargs: Any) -> Any:
    """``runner.run_step``; ``force`` (re-run even when an identical artifact exists) is passed
    only when set, so lineage records it only on forced runs."""
    if force:
        kwargs["force"] = True
    return runner.run_step(step, cfg, home, ctx, **kwargs)


def ingest(config_path: str | Path, ctx: RunContext, params: dict | None = None,
           logical_date: dt.date | None = None, home: str | Path | None = None) -> Ingested:
    """Ingests the window of spans ending at the run's span, and the golden set when configured.

    Returns the resolved params too, so that downstream tasks use exactly what ingest used.
    """
    cfg, home = _setup(config_path, home)
    p = resolve_params(cfg, params, logical_date)
    res: IngestResult = _run("ingest", cfg, home, ctx, p["force"],
                             span=dt.date.fromisoformat(p["span"]), window=p["window"])
    golden: IngestResult | None = None
    if cfg.source.golden_pattern:
        golden = _run("ingest", cfg, home, ctx, p["force"], golden=True)
    return Ingested(snapshot_id=res["snapshot_id"], uri=res["uri"], sha256=res["sha256"],
                    reused=res["reused"], spans=res["spans"], rows=res["rows"],
                    malformed_rows=res["malformed_rows"], provenance_uri=res["provenance_uri"],
                    params=p, golden_uri=golden["uri"] if golden else None,
                    golden_sha256=golden["sha256"] if golden else None)


def validate(config_path: str | Path, ctx: RunContext, ingested: Ingested,
             home: str | Path | None = None) -> Validated:
    """Validates the snapshot; raises ``DataRejected`` (the gate) when the data is refused."""
    cfg, home = _setup(config_path, home)
    res: ValidateResult = _run("validate", cfg, home, ctx, ingested["params"]["force"],
                               snapshot_uri=ingested["uri"])
    return Validated(status=res["status"], snapshot_uri=res["snapshot_uri"],
                     expectations=res["expectations"], failures=res["failures"],
                     baseline_uri=res["baseline_uri"], report_html=res["report_html"])


def transform(config_path: str | Path, ctx: RunContext, ingested: Ingested,
              home: str | Path | None = None) -> Transformed:
    cfg, home = _setup(config_path, home)
    res: TransformResult = _run("transform", cfg, home, ctx, ingested["params"]["force"],
                                snapshot_uris=[ingested["uri"]])
    return Transformed(transform_uri=res["transform_uri"],
                       transform_graph_uri=res["transform_graph_uri"],
                       transformed=res["transformed"], sha256=res["sha256"])


def train(config_path: str | Path, ctx: RunContext, transformed: Transformed, ingested: Ingested,
          home: str | Path | None = None) -> Trained:
    cfg, home = _setup(config_path, home)
    extra = {}
    if cfg.model.warm_start:  # start from the weights of the model now in production, if any
        from pipelines.registry import production

        if current := production(cfg, home):
            extra["warm_start_from"] = current["uri"]
    res: TrainResult = _run("train", cfg, home, ctx, ingested["params"]["force"],
                            transform_uri=transformed["transform_uri"], **extra)
    return Trained(model_uri=res["model_uri"], model_id=res["model_id"], sha256=res["sha256"],
                   metrics=res["metrics"])


def evaluate(config_path: str | Path, ctx: RunContext, trained: Trained, ingested: Ingested,
             home: str | Path | None = None) -> Evaluated:
    """Evaluates the candidate against production; ``blessed`` drives the promotion gate.

    Promote's infra check of the candidate runs meanwhile in its own process (issue 11: on the
    second core) and is kept for promote when the candidate is blessed (:func:`_infra_check_ahead`).
    """
    cfg, home = _setup(config_path, home)
    ahead = _infra_check_ahead(cfg, trained, ingested)
    try:
        res: EvaluateResult = _run(
            "evaluate", cfg, home, ctx,  # every evaluation is new: nothing to force
            model_uri=trained["model_uri"], snapshot_uris=[ingested["uri"]],
            golden_uri=ingested.get("golden_uri"),
            threshold_overrides=ingested["params"]["threshold_overrides"] or None)
    except BaseException:
        if ahead is not None:
            ahead.stop()
        raise
    if ahead is not None:
        from pipelines import infra_check, store

        if res["blessed"]:
            infra_check.keep(ahead, store.root(home, store.Kind.INFRA_CHECK, cfg.name))
        else:  # promote will not run
            ahead.stop()
    return Evaluated(evaluation_uri=res["evaluation_uri"], blessed=res["blessed"],
                     reasons=res["reasons"], baseline=res["baseline"], metrics=res["metrics"],
                     model_uri=trained["model_uri"])


def _infra_check_ahead(cfg: PipelineConfig, trained: Trained,
                       ingested: Ingested) -> infra_check.Child | None:
    """Promote's infra check of the candidate, started now; None if it cannot be (promote then
    runs it itself). Promote takes the kept result only for the same SavedModel bytes and
    arguments (:func:`pipelines.infra_check.check`)."""
    from pipelines import infra_check
    from pipelines.evaluate import saved_model_dir

    try:
        golden = ingested.get("golden_uri")
        pattern = infra_check.examples_pattern(
            cfg, str(Path(golden).resolve()) if golden else None,
            str(Path(ingested["uri"]).resolve()))
        return infra_check.prestart(saved_model_dir(trained["model_uri"]), pattern,
                                    n=cfg.promotion.infra_check_examples, task=cfg.task,
                                    classes=cfg.label.classes)
    except Exception as exc:  # noqa: BLE001 - only a head start: promote checks as usual
        log.warning("infra check not started ahead of promote (%s: %s); promote runs it",
                    type(exc).__name__, exc)
        return None


def promote(config_path: str | Path, ctx: RunContext, evaluated: Evaluated,
            home: str | Path | None = None) -> Promoted:
    """Pushes a blessed model to the registry; raises ``NotPromoted`` when the push is refused."""
    cfg, home = _setup(config_path, home)
    res: PromoteResult = _run("promote", cfg, home, ctx, model_uri=evaluated["model_uri"],
                              evaluation_uri=evaluated["evaluation_uri"])
    out = Promoted(promoted=res["promoted"], version=res["version"],
                   registry_uri=res["registry_uri"], previous_version=res["previous_version"],
                   reasons=res["reasons"], shadow=bool(res.get("shadow")))
    if not res.get("promoted") and not res.get("shadow"):  # shadow: registered, not production
        raise NotPromoted("model not promoted: " + "; ".join(res.get("reasons") or ["no reason given"]),
                          dict(out))
    return out


def report(config_path: str | Path, ctx: RunContext, evaluated: Evaluated,
           promoted: Promoted | None, home: str | Path | None = None) -> Reported:
    cfg, home = _setup(config_path, home)
    res: ReportResult = _run("report", cfg, home, ctx, evaluation_uri=evaluated["evaluation_uri"],
                             promotion=promoted)
    return Reported(report_html=res["report_html"])


def run_chain(config_path: str | Path, ctx: RunContext, params: dict | None = None,
              home: str | Path | None = None,
              on_task: Callable[[str, dict], None] | None = None,
              on_start: Callable[[str], None] | None = None) -> dict:
    """Runs every task in order in this process, exactly as the DAG chains them.

    Returns ``{task: result}``; ``promote`` is ``None`` when the model was not blessed or not
    promoted (then ``not_promoted`` holds the reasons). ``DataRejected`` propagates.
    """
    done: dict[str, Any] = {}

    def step(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        log.info("task %s: start", name)
        if on_start:  # progress hook of `pipelines run` (issue 13)
            on_start(name)
        done[name] = fn(config_path, ctx, *args, home=home)
        if on_task:
            on_task(name, done[name])
        return done[name]

    ingested = step("ingest", ingest, params)
    step("validate", validate, ingested)
    transformed = step("transform", transform, ingested)
    trained = step("train", train, transformed, ingested)
    evaluated = step("evaluate", evaluate, trained, ingested)
    done["promote"], done["not_promoted"] = None, None
    promotion = None
    if evaluated.get("blessed"):
        try:
            promotion = step("promote", promote, evaluated)
        except NotPromoted as exc:  # blessed but refused (infra check, lost race): say why
            done["not_promoted"] = [str(exc)]
            promotion = exc.result or None
    else:
        done["not_promoted"] = list(evaluated.get("reasons") or ["not blessed"])
    step("report", report, evaluated, promotion)
    return done
