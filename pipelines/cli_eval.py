"""``pipelines evaluate|promote|report`` and ``pipelines registry list|show|rollback``.

Registered on the `pipelines` app by pipelines.cli. Steps run through ``runner.run_step`` so
lineage is recorded as under Airflow; ``--json`` prints the result as one JSON document on stdout.
``promote`` exits 3 when the model is not promoted (the reasons on stderr, and in the JSON with
``--json``). TensorFlow and TFMA are imported only when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.common import PipelineError, UsageError

ConfigArg = Annotated[Path, typer.Argument(help="pipeline config, e.g. configs/adult.yaml")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as one JSON document")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="model URI (default: the newest)")]
EvalOpt = Annotated[str | None, typer.Option("--evaluation",
                                             help="evaluation URI (default: the newest)")]

registry_app = typer.Typer(help="Read the model registry and roll production back.",
                           no_args_is_help=True)


def _newest(root: Path, marker: str, what: str, hint: str) -> Path:
    found = sorted((p for p in root.glob("*") if (p / marker).is_file()),
                   key=lambda p: (p / marker).stat().st_mtime)
    if not found:
        raise PipelineError(f"no {what} under {root}; run `{hint}` first")
    return found[-1]


def parse_overrides(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UsageError(f"--threshold {item!r}: expected NAME=NUMBER, e.g. slice_auc_min=0.86")
    return out


def evaluate(
    config: ConfigArg, model: ModelOpt = None,
    snapshot: Annotated[list[str] | None, typer.Option(
        help="snapshot URI or id, repeatable (default: the newest accepted one)")] = None,
    golden: Annotated[str | None, typer.Option(
        help="golden snapshot URI or id (default: the newest golden snapshot, if any)")] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        help="override a threshold within evaluation.override_bounds: NAME=VALUE")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit a model with TFMA per slice against production; write the blessing record."""
    from pipelines.blessing import effective_thresholds
    from pipelines.cli import context, emit, home, load
    from pipelines.runner import run_step
    from pipelines.snapshots import find_snapshot, list_snapshots, resolve_snapshots

    cfg = load(config)
    overrides = parse_overrides(threshold)
    effective_thresholds(cfg, overrides)  # untrusted input: rejected before it touches anything
    model_uri = model or str(_newest(home() / "models" / cfg.name, "model.json", "model",
                                     f"pipelines train {config}") / "saved_model")
    uris = resolve_snapshots(cfg, home(), snapshot)
    goldens = list_snapshots(cfg, home(), golden=True)
    golden_uri = find_snapshot(cfg, home(), golden, golden=True) if golden else (
        str(goldens[-1]) if goldens else None)
    result = run_step("evaluate", cfg, home(), context(), model_uri=model_uri,
                      snapshot_uris=uris, golden_uri=golden_uri,
                      threshold_overrides=overrides or None)
    verdict = "BLESSED" if result["blessed"] else "NOT BLESSED: " + "; ".join(result["reasons"])
    emit(result, as_json, f"{verdict}\nevaluation {result['evaluation_uri']}")


def promote(config: ConfigArg, model: ModelOpt = None, evaluation: EvalOpt = None,
            as_json: JsonOpt = False) -> None:
    """Push a blessed model that passes the infra check; exit 3 with the reasons if not."""
    from pipelines import evaluate as evaluation_lib
    from pipelines.cli import context, emit, home, load
    from pipelines.runner import run_step

    cfg = load(config)
    ev = evaluation or str(_newest(home() / "evaluations" / cfg.name, "evaluation.json",
                                   "evaluation", f"pipelines evaluate {config}"))
    model_uri = model or evaluation_lib.load(ev)["model"]["uri"]
    result = run_step("promote", cfg, home(), context(), model_uri=model_uri, evaluation_uri=ev)
    emit(result, as_json, f"promoted {model_uri} as version {result['version']} "
         f"({result['registry_uri']}); previous: {result['previous_version']}")


def report(config: ConfigArg, evaluation: EvalOpt = None,
           promotion: Annotated[Path | None, typer.Option(
               help="JSON file holding the promote result (from `promote --json`)")] = None,
           as_json: JsonOpt = False) -> None:
    """Write the HTML audit page of an evaluation (and its promotion)."""
    from pipelines.cli import context, emit, home, load
    from pipelines.runner import run_step

    cfg = load(config)
    ev = evaluation or str(_newest(home() / "evaluations" / cfg.name, "evaluation.json",
                                   "evaluation", f"pipelines evaluate {config}"))
    promo = None
    if promotion is not None:
        try:
            promo = json.loads(promotion.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"--promotion {promotion}: not a readable JSON file: {exc}") from exc
    result = run_step("report", cfg, home(), context(), evaluation_uri=ev, promotion=promo)
    emit(result, as_json, f"{result['decision']}: {result['report_html']}")


def registry_list(config: ConfigArg, as_json: JsonOpt = False) -> None:
    """List registered versions and their aliases."""
    from pipelines import registry
    from pipelines.cli import emit, home, load

    cfg = load(config)
    versions = registry.list_versions(cfg, home())
    lines = [f"{v['version']:>4}  {','.join(v['aliases']) or '-':<20} {v.get('registered_at', '')}"
             f"  {v.get('model_uri', '')}" for v in versions]
    emit({"pipeline": cfg.name, "versions": versions}, as_json,
         "\n".join(lines) or f"registry {cfg.name} is empty")


def registry_show(config: ConfigArg, ref: Annotated[str, typer.Argument(
        help="version number or alias (production, previous)")] = "production",
        as_json: JsonOpt = False) -> None:
    """Show one version (by number or alias) with its registry record."""
    from pipelines import registry
    from pipelines.cli import emit, home, load

    emit(registry.show(load(config), home(), ref), as_json)


def registry_rollback(config: ConfigArg, reason: Annotated[str, typer.Option(
        help="why, recorded in the registry history and lineage")] = "",
        as_json: JsonOpt = False) -> None:
    """Make `previous` production again (recorded as a `rollback` step in lineage)."""
    from pipelines.cli import context, emit, home, load
    from pipelines.runner import run_step

    result = run_step("rollback", load(config), home(), context(), reason=reason)
    emit(result, as_json, f"production is version {result['production']['version']} again "
         f"(rolled back from {result['rolled_back_from']})")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `pipelines` app."""
    from pipelines.cli import handle_errors

    app.command("evaluate")(handle_errors(evaluate))
    app.command("promote")(handle_errors(promote))
    app.command("report")(handle_errors(report))
    registry_app.command("list")(handle_errors(registry_list))
    registry_app.command("show")(handle_errors(registry_show))
    registry_app.command("rollback")(handle_errors(registry_rollback))
    app.add_typer(registry_app, name="registry")
