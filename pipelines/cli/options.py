"""What every `pipelines` command shares: the one definition of each option and of its parsing.

Imported by the command modules (:mod:`pipelines.cli.steps`, ``model``, ``evaluate``,
``registry``, ``run``, ``lineage``), never the reverse. Holds the argument and option types (``ConfigArg``,
``JsonOpt``, ``SpanOpt``, ``ThresholdOpt``, ...), their parsers (:func:`parse_span`, :func:`parse_overrides`), the
global options (:func:`main`: ``--home``, ``--verbose``), and the helpers a command body uses:
:func:`home`, :func:`load`, :func:`context`, :func:`newest`, :func:`emit`, :func:`handle_errors`.

Exit codes: 0 success, 1 unexpected failure, 2 usage error, 3 run completed but the model was not
promoted, 4 data rejected by validation.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines import store
from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.context import RunContext
from pipelines.dates import parse_date
from pipelines.errors import EXIT_FAILURE, EXIT_USAGE, PipelineError, UsageError
from pipelines.store import resolve_home

log = logging.getLogger("pipelines")

ConfigArg = Annotated[Path, typer.Argument(help="pipeline config, e.g. configs/adult.yaml")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as one JSON document")]
SpanOpt = Annotated[
    str | None, typer.Option("--span", help="span date YYYY-MM-DD (default: the newest span)")
]
WindowEndOpt = Annotated[
    str, typer.Option("--span", help="last span date YYYY-MM-DD of the window")
]
ThresholdOpt = Annotated[
    list[str] | None,
    typer.Option(help="override a threshold within evaluation.override_bounds: NAME=VALUE"),
]
PipelineArg = Annotated[str, typer.Argument(help="pipeline name, e.g. adult")]
VersionArg = Annotated[str, typer.Argument(help="registry version, e.g. 3")]


class State:
    home: Path | None = None


def main(
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="PIPELINES_HOME", help="artifact store root [default: ./var]"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """The global options, read before any command runs (the app's callback)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    State.home = resolve_home(home)


def home() -> Path:
    return State.home or resolve_home()


def load(config: Path) -> PipelineConfig:
    return load_config(config)


def context() -> RunContext:
    return RunContext(triggered_by="cli")


def parse_span(span: str | None, option: str = "--span") -> dt.date | None:
    """``--span`` (or another date option) as a date; ``None`` when not given.

    Raises:
        UsageError: not a date in YYYY-MM-DD form, an empty string included (exit 2).
    """
    if span is None:
        return None
    day = parse_date(span, option)
    if day is None:  # "": given, but empty
        raise UsageError(f"{option} {span!r} is not a date in YYYY-MM-DD form")
    return day


def parse_overrides(items: list[str] | None, option: str = "--threshold") -> dict[str, float]:
    """``NAME=VALUE`` items as ``{name: value}``; a later item overrides an earlier one.

    Only the form is checked here: whether NAME is a threshold the config allows, and VALUE within
    its ``override_bounds``, is the step's question (:func:`pipelines.blessing.effective_thresholds`
    for ``evaluate``, :func:`pipelines.params.resolve_params` for ``run``).

    Raises:
        UsageError: an item is not ``NAME=NUMBER`` with a finite number (exit 2).
    """
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        name = name.strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not sep or not name or not math.isfinite(value):
            raise UsageError(f"{option} {item!r}: expected NAME=NUMBER, NAME a threshold in "
                             "the config's evaluation.override_bounds")
        out[name] = value
    return out


def newest(cfg: PipelineConfig, kind: str, hint: str) -> Path:
    """The newest complete artifact of ``kind`` (see :data:`pipelines.store.KINDS`).

    Raises:
        PipelineError: there is none yet; the message names the command to run first (``hint``).
    """
    found = store.newest(home(), kind, cfg.name)
    if found is None:
        what = store.MARKERS[store.Kind(kind)].removesuffix(".json")
        raise PipelineError(f"no {what} under {store.root(home(), kind, cfg.name)}; "
                            f"run `{hint}` first")
    return found


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
