"""``pipelines evaluate|promote|report``: steps 5 to 7 from the command line.

Steps run through ``runner.run_step`` so lineage is recorded as under Airflow; ``--json`` prints the
result as one JSON document on stdout. ``promote`` exits 3 when the model is not promoted (the
reasons on stderr, and in the JSON with ``--json``). TensorFlow and TFMA are imported only when a
command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.options import (
    ConfigArg,
    JsonOpt,
    ThresholdOpt,
    context,
    emit,
    handle_errors,
    home,
    load,
    newest,
    parse_overrides,
)
from pipelines.errors import UsageError

ModelOpt = Annotated[str | None, typer.Option("--model", help="model URI (default: the newest)")]
EvalOpt = Annotated[str | None, typer.Option("--evaluation",
                                             help="evaluation URI (default: the newest)")]


@handle_errors
def evaluate(
    config: ConfigArg, model: ModelOpt = None,
    snapshot: Annotated[list[str] | None, typer.Option(
        help="snapshot URI or id, repeatable (default: the newest accepted one)")] = None,
    golden: Annotated[str | None, typer.Option(
        help="golden snapshot URI or id (default: the newest golden snapshot, if any)")] = None,
    threshold: ThresholdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit a model with TFMA per slice against production; write the blessing record."""
    from pipelines.blessing import effective_thresholds
    from pipelines.runner import run_step
    from pipelines.snapshots import find_snapshot, list_snapshots, resolve_snapshots

    cfg = load(config)
    overrides = parse_overrides(threshold)
    effective_thresholds(cfg, overrides)  # untrusted input: rejected before it touches anything
    model_uri = model or str(newest(cfg, "models", f"pipelines train {config}") / "saved_model")
    uris = resolve_snapshots(cfg, home(), snapshot)
    goldens = list_snapshots(cfg, home(), golden=True)
    golden_uri = find_snapshot(cfg, home(), golden, golden=True) if golden else (
        str(goldens[-1]) if goldens else None)
    result = run_step("evaluate", cfg, home(), context(), model_uri=model_uri,
                      snapshot_uris=uris, golden_uri=golden_uri,
                      threshold_overrides=overrides or None)
    verdict = "BLESSED" if result["blessed"] else "NOT BLESSED: " + "; ".join(result["reasons"])
    emit(result, as_json, f"{verdict}\nevaluation {result['evaluation_uri']}")


@handle_errors
def promote(config: ConfigArg, model: ModelOpt = None, evaluation: EvalOpt = None,
            as_json: JsonOpt = False) -> None:
    """Push a blessed model that passes the infra check; exit 3 with the reasons if not."""
    from pipelines import evaluate as evaluation_lib
    from pipelines.runner import run_step

    cfg = load(config)
    ev = evaluation or str(newest(cfg, "evaluations", f"pipelines evaluate {config}"))
    model_uri = model or evaluation_lib.load(ev)["model"]["uri"]
    result = run_step("promote", cfg, home(), context(), model_uri=model_uri, evaluation_uri=ev)
    what = "shadow candidate" if result.get("shadow") else "promoted"  # issue 12: policy shadow
    emit(result, as_json, f"{what} {model_uri} as version {result['version']} "
         f"({result['registry_uri']}); production before: {result['previous_version']}"
         + "".join(f"\n{r}" for r in result.get("reasons") or []))


@handle_errors
def report(config: ConfigArg, evaluation: EvalOpt = None,
           promotion: Annotated[Path | None, typer.Option(
               help="JSON file holding the promote result (from `promote --json`)")] = None,
           as_json: JsonOpt = False) -> None:
    """Write the HTML audit page of an evaluation (and its promotion)."""
    from pipelines.runner import run_step

    cfg = load(config)
    ev = evaluation or str(newest(cfg, "evaluations", f"pipelines evaluate {config}"))
    promo = None
    if promotion is not None:
        try:
            promo = json.loads(promotion.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"--promotion {promotion}: not a readable JSON file: {exc}") from exc
    result = run_step("report", cfg, home(), context(), evaluation_uri=ev, promotion=promo)
    emit(result, as_json, f"{result['decision']}: {result['report_html']}")
