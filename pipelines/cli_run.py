"""``pipelines run``: the whole retraining chain in one process, without Airflow.

Registered on the `pipelines` app by pipelines.cli. Runs :func:`pipelines.flow.run_chain`, the very
functions the DAG tasks call, with the same artifacts and lineage. Exit codes: 0 promoted, 3 run
completed but not promoted, 4 data rejected by validation, 2 usage error, 1 unexpected failure.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from pipelines.common import EXIT_NOT_PROMOTED, RunContext, UsageError, utcnow

ConfigArg = Annotated[Path, typer.Argument(help="pipeline config, e.g. configs/adult.yaml")]
SpanOpt = Annotated[str, typer.Option("--span", help="last span date YYYY-MM-DD of the window")]
WindowOpt = Annotated[
    int | None, typer.Option(min=1, max=366, help="spans to train on [default: the config's]")
]
ForceOpt = Annotated[bool, typer.Option(help="re-run steps even when their artifacts exist")]
ThresholdOpt = Annotated[
    list[str] | None,
    typer.Option(help="threshold override NAME=VALUE within the config's override_bounds"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print every task's result as JSON")]


def _overrides(values: list[str]) -> dict[str, float]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[f"threshold_{key.strip()}"] = float(value)
        except ValueError as exc:
            raise UsageError(f"--threshold {item!r}: expected NAME=NUMBER, "
                             f"e.g. overall_auc_min=0.88") from exc
    return out


def register(app: typer.Typer) -> None:
    """Adds ``run`` to the `pipelines` app."""
    from pipelines import cli

    @app.command("run")
    @cli.handle_errors
    def run(
        config: ConfigArg,
        span: SpanOpt,
        window: WindowOpt = None,
        force: ForceOpt = False,
        threshold: ThresholdOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run ingest → validate → transform → train → evaluate → promote → report in one process."""
        from pipelines import flow
        from pipelines.params import resolve_params

        try:
            day = dt.date.fromisoformat(span)
        except ValueError as exc:
            raise UsageError(f"--span {span!r} is not a date in YYYY-MM-DD form") from exc
        params = {"span": day.isoformat(), "window": window, "force": force,
                  **_overrides(threshold or [])}
        resolve_params(cli.load(config), params)  # bad config or params: exit 2 before any work
        ctx = RunContext(run_id=f"cli__{utcnow()}__{day.isoformat()}", triggered_by="cli",
                         params=params)

        def progress(task: str, result: dict) -> None:
            typer.echo(f"{task}: done", err=True)

        done = flow.run_chain(Path(config), ctx, params, home=cli.home(), on_task=progress)
        report_html = done["report"]["report_html"]
        if done["promote"]:
            p = done["promote"]
            cli.emit(done, as_json, f"promoted version {p['version']} to {p['registry_uri']}\n"
                     f"report: {report_html}")
            return
        cli.emit(done, as_json, "not promoted: " + "; ".join(done["not_promoted"] or [])
                 + f"\nreport: {report_html}")
        raise typer.Exit(EXIT_NOT_PROMOTED)

