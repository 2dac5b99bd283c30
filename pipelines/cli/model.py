"""``pipelines transform`` and ``pipelines train``: steps 3 and 4 from the command line.

Each command runs its step through ``runner.run_step`` (so lineage is recorded exactly as under
Airflow) and prints the step result; ``--json`` prints it as one JSON document on stdout.
TensorFlow, Beam and TFT are imported only when a command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli.options import (
    ConfigArg,
    JsonOpt,
    context,
    emit,
    handle_errors,
    home,
    load,
    newest,
)


@handle_errors
def transform(
    config: ConfigArg,
    snapshot: Annotated[
        list[str] | None,
        typer.Option(help="snapshot URI or id, repeatable (default: the newest accepted one)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Analyze the train split with the config's TFT preprocessing_fn and transform both splits."""
    from pipelines.runner import run_step
    from pipelines.snapshots import resolve_snapshots

    cfg = load(config)
    uris = resolve_snapshots(cfg, home(), snapshot)
    result = run_step("transform", cfg, home(), context(), snapshot_uris=uris)
    state = "existing" if result.get("reused") else "new"
    emit(result, as_json, f"{state} transform {result['transform_uri']} "
         f"(train {result['rows']['train']} rows, eval {result['rows']['eval']} rows)")


@handle_errors
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
    from pipelines.runner import run_step

    cfg = load(config)
    uri = transform_uri or str(newest(cfg, "transforms", f"pipelines transform {config}"))
    result = run_step("train", cfg, home(), context(), transform_uri=uri,
                      warm_start_from=warm_start_from)
    state = "existing" if result.get("reused") else "new"
    headline = result["headline_metric"]
    emit(result, as_json, f"{state} model {result['model_id']} at {result['model_uri']} "
         f"({headline} {result['metrics'][headline]:.4f}); curves {result['curves_png']}")
