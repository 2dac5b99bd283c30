"""``pipelines run``: the whole retraining chain in one process, without Airflow.

Runs :func:`pipelines.flow.run_chain`, the very functions the DAG tasks call, with the same
artifacts and lineage. Exit codes: 0 promoted, 3 run completed but not promoted, 4 data rejected by
validation, 2 usage error, 1 unexpected failure.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.options import (
    ConfigArg,
    JsonOpt,
    ThresholdOpt,
    WindowEndOpt,
    emit,
    handle_errors,
    home,
    load,
    parse_overrides,
    parse_span,
)
from pipelines.context import RunContext
from pipelines.errors import EXIT_NOT_PROMOTED, UsageError

WindowOpt = Annotated[
    int | None, typer.Option(min=1, max=366, help="spans to train on [default: the config's]")
]
ForceOpt = Annotated[bool, typer.Option(help="re-run steps even when their artifacts exist")]


@handle_errors
def run(
    config: ConfigArg,
    span: WindowEndOpt,
    window: WindowOpt = None,
    force: ForceOpt = False,
    threshold: ThresholdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run ingest → validate → transform → train → evaluate → promote → report in one process."""
    from pipelines import flow
    from pipelines.params import THRESHOLD_PREFIX, resolve_params

    day = parse_span(span)
    if day is None:
        raise UsageError("--span is required: the last span of the window, YYYY-MM-DD")
    overrides = parse_overrides(threshold)
    params = {"span": day.isoformat(), "window": window, "force": force,
              **{THRESHOLD_PREFIX + name: value for name, value in overrides.items()}}
    resolve_params(load(config), params)  # bad config or params: exit 2 before any work
    # microseconds and a random suffix: two runs started in the same second never share an id
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    ctx = RunContext(run_id=f"cli__{stamp}__{uuid.uuid4().hex[:6]}__{day.isoformat()}",
                     triggered_by="cli", params=params)

    started: dict[str, float] = {}

    def on_start(task: str) -> None:  # one line per task as it starts and ends, on stderr
        started[task] = time.monotonic()
        typer.echo(f"{time.strftime('%H:%M:%S')}  {task:<11} started", err=True)

    def progress(task: str, result: dict) -> None:
        seconds = time.monotonic() - started.get(task, time.monotonic())
        typer.echo(f"{time.strftime('%H:%M:%S')}  {task:<11} success {seconds:9.1f} s", err=True)

    done = flow.run_chain(Path(config), ctx, params, home=home(), on_task=progress,
                          on_start=on_start)
    report_html = done["report"]["report_html"]
    if done["promote"]:
        p = done["promote"]
        what = "shadow candidate" if p.get("shadow") else "promoted"  # issue 12: policy shadow
        emit(done, as_json, f"{what} version {p['version']} to {p['registry_uri']}\n"
             f"report: {report_html}")
        return
    emit(done, as_json, "not promoted: " + "; ".join(done["not_promoted"] or [])
         + f"\nreport: {report_html}")
    raise typer.Exit(EXIT_NOT_PROMOTED)
