"""``pipelines transform`` and ``pipelines train``: steps 3 and 4 from the command line.

Registered on the `pipelines` app by pipelines.cli. Each command runs its step through
``runner.run_step`` (so lineage is recorded exactly as under Airflow) and prints the step result;
``--json`` prints it as one JSON document on stdout. TensorFlow, Beam and TFT are imported only
when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.common import PipelineError

# Defined here, not imported from pipelines.cli, so this module imports on its own.
ConfigArg = Annotated[Path, typer.Argument(help="pipeline config, e.g. configs/adult.yaml")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as one JSON document")]


def transform(
    config: ConfigArg,
    snapshot: Annotated[
        list[str] | None,
        typer.Option(help="snapshot URI or id, repeatable (default: the newest accepted one)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Analyze the train split with the config's TFT preprocessing_fn and transform both splits."""
    from pipelines.cli import context, emit, home, load
    from pipelines.runner import run_step
    from pipelines.snapshots import resolve_snapshots

    cfg = load(config)
    uris = resolve_snapshots(cfg, home(), snapshot)
    result = run_step("transform", cfg, home(), context(), snapshot_uris=uris)
    state = "existing" if result.get("reused") else "new"
    emit(result, as_json, f"{state} transform {result['transform_uri']} "
         f"(train {result['rows']['train']} rows, eval {result['rows']['eval']} rows)")


def train(
    config: ConfigArg,
    transform_uri: Annotated[
        str | None,
        typer.Option("--transform", help="transform URI (default: the newest transform)"),
    ] = None,
    warm_start_from: Annotated[
        str | None,
        typer.Option("--warm-start-from", help="SavedModel folder to start the weights from"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the Keras model on a transform and export a SavedModel that serves raw tf.Examples."""
    from pipelines.cli import context, emit, home, load
    from pipelines.runner import run_step

    cfg = load(config)
    uri = transform_uri or _newest_transform(home() / "transforms" / cfg.name)
    result = run_step("train", cfg, home(), context(), transform_uri=uri,
                      warm_start_from=warm_start_from)
    state = "existing" if result.get("reused") else "new"
    emit(result, as_json, f"{state} model {result['model_id']} at {result['model_uri']} "
         f"(eval AUC {result['metrics']['eval_auc']:.4f}); curves {result['curves_png']}")


def _newest_transform(root: Path) -> str:
    found = sorted((p for p in root.glob("*") if (p / "transform.json").is_file()),
                   key=lambda p: (p / "transform.json").stat().st_mtime)
    if not found:
        raise PipelineError(f"no transform under {root}; run `pipelines transform` first")
    return str(found[-1])


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `pipelines` app."""
    from pipelines.cli import handle_errors

    app.command("transform")(handle_errors(transform))
    app.command("train")(handle_errors(train))
