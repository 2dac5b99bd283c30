"""Run parameters of a retraining run: their JSON schema and their validation.

Called by the DAG factory (dags/retrain.py turns :func:`param_schemas` into Airflow ``Param``s, so
Airflow rejects a bad manual trigger before any task starts), by :mod:`pipelines.flow` (which checks
them again, as trigger-time input is untrusted) and by ``pipelines run``. Plain Python: no Airflow.

Settings resolve in the order config file, then environment, then trigger-time params; a param that
is ``null`` (the default) keeps the value from the config or from the run's logical date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipelines.config import FAIRNESS_GATE, PipelineConfig
from pipelines.dates import DATE_PATTERN, DATE_SCHEMA_FORMAT, parse_date
from pipelines.errors import UsageError
from pipelines.results import RunParams

SPAN_PATTERN = DATE_PATTERN
THRESHOLD_PREFIX = "threshold_"
# Airflow validates a Param with jsonschema's validator for the schema's "$schema" (the newest draft
# when absent) and a FormatChecker. Draft 4 is named because from draft 6 on "integer" admits 7.0,
# which a window must not be; the format checker refuses dates that do not exist ("format": DATE_SCHEMA_FORMAT,
# e.g. 2026-02-30), which no pattern can do simply. resolve_params checks both again.
JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-04/schema#"


def configured_threshold(cfg: PipelineConfig, name: str) -> float | None:
    """The configured value of a threshold (a gate of config.GATES or fairness_max_gap)."""
    ev = cfg.evaluation
    if name == FAIRNESS_GATE:
        return ev.fairness.max_gap if ev.fairness is not None else None
    return ev.thresholds.get(name)


def param_schemas(cfg: PipelineConfig) -> dict[str, dict[str, Any]]:
    """JSON schema of every trigger-time param, keyed by param name.

    Each value holds ``default``, ``description`` and the schema keywords (``$schema`` included),
    ready for ``airflow.sdk.Param(default, description=..., **schema)``.
    """
    schemas: dict[str, dict[str, Any]] = {
        "span": {
            "default": None,
            "type": ["null", "string"],
            "pattern": SPAN_PATTERN,
            "format": DATE_SCHEMA_FORMAT,
            "description": "last span to ingest, YYYY-MM-DD; empty: the run's logical date",
        },
        "window": {
            "default": None,
            "type": ["null", "integer"],
            "minimum": 1,
            "maximum": 366,
            "description": f"number of daily spans ending at `span` to train on; empty: {cfg.window}",
        },
        "force": {
            "default": False,
            "type": "boolean",
            "description": "re-run a step even when an identical artifact already exists",
        },
    }
    for name, (low, high) in sorted(cfg.evaluation.override_bounds.items()):
        current = configured_threshold(cfg, name)
        schemas[THRESHOLD_PREFIX + name] = {
            "default": None,
            "type": ["null", "number"],
            "minimum": low,
            "maximum": high,
            "description": f"override of evaluation threshold {name} (config: {current}), "
            f"allowed range [{low}, {high}]",
        }
    for schema in schemas.values():
        schema["$schema"] = JSON_SCHEMA_DRAFT
    return schemas


def resolve_params(cfg: PipelineConfig, raw: dict[str, Any] | None,
                   logical_date: dt.date | None = None) -> RunParams:
    """Validates trigger-time params against the config and fills in defaults.

    Args:
        cfg: the pipeline config (defines the window and the allowed threshold ranges).
        raw: params as given (unknown keys are an error; ``None`` values mean "use the default").
        logical_date: the run's logical date, the span when ``span`` is not given.

    Returns:
        ``{"span": "YYYY-MM-DD", "window": int, "force": bool, "threshold_overrides": {...}}``.

    Raises:
        UsageError: naming the first invalid param and what it accepts.
    """
    raw = dict(raw or {})
    schemas = param_schemas(cfg)
    unknown = sorted(set(raw) - set(schemas))
    if unknown:
        raise UsageError(f"unknown param(s) {unknown}; accepted: {sorted(schemas)}")

    span = parse_date(raw.get("span"), "param span") or logical_date
    if span is None:
        raise UsageError("param span is required when the run has no logical date")

    window = raw.get("window")
    if window is None:
        window = cfg.window
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 366:
        raise UsageError(f"param window={window!r} must be an integer between 1 and 366")

    force = raw.get("force", False)
    if not isinstance(force, bool):
        raise UsageError(f"param force={force!r} must be true or false")

    overrides: dict[str, float] = {}
    for name, (low, high) in cfg.evaluation.override_bounds.items():
        value = raw.get(THRESHOLD_PREFIX + name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise UsageError(
                f"param {THRESHOLD_PREFIX}{name}={value!r} is outside the range [{low}, {high}] "
                f"that configs/{cfg.name}.yaml evaluation.override_bounds allows"
            )
        overrides[name] = float(value)
    return RunParams(span=span.isoformat(), window=window, force=force,
                     threshold_overrides=overrides)
