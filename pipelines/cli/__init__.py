"""The `pipelines` console script: every step as a command, the same functions the DAG calls.

Exit codes: 0 success, 1 unexpected failure, 2 usage error, 3 run completed but the model was not
promoted, 4 data rejected by validation. Step commands take ``--json`` and then print their result
as one JSON document on stdout (logs go to stderr).

This module only assembles :data:`app` from the command modules; they share
:mod:`pipelines.cli.options` and nothing imports this module back.
"""

from __future__ import annotations

import typer

from pipelines.cli import evaluate, lineage, model, options, registry, run, steps

app = typer.Typer(
    help="Retraining pipeline steps: ingest, validate, transform, train, evaluate, promote, and "
    "the registry and lineage readers. Artifacts live under --home (or PIPELINES_HOME).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.callback()(options.main)

app.command("demo-data")(steps.demo_data)
app.command("ingest")(steps.ingest)
app.command("validate")(steps.validate)
app.command("transform")(model.transform)
app.command("train")(model.train)
app.command("evaluate")(evaluate.evaluate)
app.command("promote")(evaluate.promote)
app.command("report")(evaluate.report)
app.add_typer(registry.app, name="registry")
app.add_typer(lineage.app, name="lineage")
app.command("run")(run.run)

__all__ = ["app"]
