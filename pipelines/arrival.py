"""Data arrival (issue 12): has a run's span landed, which span a triggered run is for, and the
lineage record of a run that ended with no data.

Used by the retrain DAG's first task ``wait_for_span`` (dags/dag_support.py) in the worker; the
waiting itself is deferred to Airflow's triggerer, which polls the glob :func:`span_glob` returns.
Light on purpose: no Airflow, no Beam, no TensorFlow (``pipelines.lineage`` is imported only when a
record is written).

The landing rules are ingest's (:func:`pipelines.ingest.available_spans`): the landing area is
:func:`pipelines.store.resolve_landing` of the home, and one span's files are those matching
``source.uri_pattern`` with ``{landing}`` and ``{span}`` (formatted with ``source.span_format``)
substituted, without recursive ``**``. Whether those files are acceptable (regular, inside the
landing area, not too large) is still ingest's to decide, with its own clear errors.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.context import RunContext
from pipelines.dates import parse_date
from pipelines.errors import PipelineError

STEP = "arrival"  # the lineage step name of the arrival check


def span_glob(cfg: PipelineConfig, landing: Path, span: dt.date) -> str:
    """The glob of one span's landing files, exactly as ingest expands it."""
    return cfg.source.uri_pattern.replace("{landing}", str(landing)).replace(
        "{span}", span.strftime(cfg.source.span_format))


def span_files(cfg: PipelineConfig, landing: Path, span: dt.date) -> list[str]:
    """The files of ``span`` in the landing area now (sorted); empty when it has not landed.

    Folders matching the pattern do not count (ingest refuses them); files are listed, not opened.
    """
    return sorted(f for f in glob.glob(span_glob(cfg, landing, span)) if os.path.isfile(f))


def alarm_request(events: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """What the monitor's ``<name>.retrain_requested`` Asset events ask for, or None (no event).

    Each event's extra is the alarm task's (dags/monitor.py): ``span``, ``reasons``,
    ``production_version``, ``monitoring_uri``. Several alarms may be batched into one run: the
    newest span is trained on and every alarm's reasons are kept.

    Raises:
        PipelineError: an event names no span, or a span that is not a date (an event written by
            something other than the monitor's alarm task).
    """
    spans, reasons, uris, versions = [], [], [], []
    for extra in events:
        extra = dict(extra or {})
        span = extra.get("span")
        try:
            day = parse_date(span, "the span of a retrain_requested event")
        except PipelineError as exc:
            raise PipelineError(f"{exc}; the event's extra was {extra}") from exc
        if day is None:
            raise PipelineError(f"a retrain_requested Asset event names no span (extra: {extra}); "
                                "events must come from the monitor DAG's alarm task, or trigger "
                                "retrain with the `span` param")
        spans.append(day)
        reasons += [f"span {day.isoformat()}: {r}" for r in extra.get("reasons") or
                    ["(no reason given)"]]
        if extra.get("monitoring_uri"):
            uris.append(str(extra["monitoring_uri"]))
        if extra.get("production_version") is not None:
            versions.append(extra["production_version"])
    if not spans:
        return None
    return {"span": max(spans).isoformat(), "spans": sorted({d.isoformat() for d in spans}),
            "reasons": reasons, "monitoring_uris": uris, "production_versions": versions}


def describe_trigger(request: Mapping[str, Any]) -> str:
    """One log line: ``triggered by monitor alarm: <reasons>`` and the span trained on."""
    return (f"triggered by monitor alarm: {'; '.join(request['reasons'])} "
            f"(training on span {request['span']})")


def _record(config_path: str | Path, ctx: RunContext, params: dict[str, Any],
            result: dict[str, Any], home: str | Path | None) -> None:
    from pipelines import lineage
    from pipelines.config import load_config
    from pipelines.store import resolve_home

    cfg = load_config(config_path)
    with lineage.execution(cfg, resolve_home(home), STEP, ctx, params=params) as execution:
        execution.complete({**result, "inputs": [], "outputs": []})


def record_arrival(config_path: str | Path, ctx: RunContext, span: str, files: list[str],
                   trigger: Mapping[str, Any] | None, home: str | Path | None = None) -> None:
    """Lineage of a run whose span landed: the files found and, when a monitor alarm triggered
    the run, why (``summary.trigger``)."""
    _record(config_path, ctx, {"span": span},
            {"landed": True, "span": span, "files": len(files),
             "trigger": dict(trigger) if trigger else None}, home)


def record_no_data(config_path: str | Path, ctx: RunContext, span: str, pattern: str,
                   waited_minutes: int, trigger: Mapping[str, Any] | None = None,
                   home: str | Path | None = None) -> str:
    """Lineage of a run that ended with no data; returns the alert text."""
    message = (f"no data for span {span} after {waited_minutes} min: no file matches {pattern}; "
               "nothing was trained or promoted. Land the files and trigger the run again "
               "(or with the `span` param)")
    _record(config_path, ctx, {"span": span, "timeout_minutes": waited_minutes},
            {"landed": False, "no_data": True, "span": span, "pattern": pattern,
             "reason": message, "trigger": dict(trigger) if trigger else None}, home)
    return message
