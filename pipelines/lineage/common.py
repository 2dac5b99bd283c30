"""What the lineage writer, readers and OpenLineage share without importing SQLAlchemy: the
statuses, how values are stored (:func:`json_safe`, :func:`summarise`, artifact kinds), the store's
URL, and the hash chain's canonical form (:mod:`pipelines.lineage.chain` documents the chain).

Kept apart from :mod:`pipelines.lineage.store` (the SQLAlchemy tables) so that recording a reused
step on the local SQLite store (:mod:`pipelines.lineage.sqlite_writer`) costs no SQLAlchemy import;
:mod:`pipelines.lineage.store` re-exports every name here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pipelines import store as artifact_store
from pipelines.errors import PipelineError

URL_ENV = "PIPELINES_LINEAGE_URL"
READ_URL_ENV = "PIPELINES_LINEAGE_READ_URL"

# Execution states. ``running`` is written first in its own transaction; a killed step stays so.
RUNNING, COMPLETED, FAILED, REJECTED, NOT_PROMOTED = (
    "running", "completed", "failed", "rejected", "not_promoted")

SUMMARY_MAX_BYTES = 64_000
# Kept when a result is too large to store whole: what an auditor asks about.
SUMMARY_KEYS = ("status", "blessed", "promoted", "reasons", "failures", "expectations", "version",
                "previous_version", "registry_uri", "snapshot_id", "reused", "golden", "spans",
                "rows", "malformed_rows", "metrics", "baseline", "model_id", "uri", "model_uri",
                "transform_uri", "evaluation_uri", "report_html", "report_json", "infra_check")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: dates, paths and other objects become strings."""
    return json.loads(json.dumps(value, default=str))


def summarise(result: dict[str, Any] | None) -> dict[str, Any]:
    """The step result without its artifact lists; only the auditor's keys if it is large."""
    body = {k: v for k, v in (result or {}).items() if k not in ("inputs", "outputs")}
    body = json_safe(body)
    if len(json.dumps(body)) > SUMMARY_MAX_BYTES:
        body = {k: body[k] for k in SUMMARY_KEYS if k in body}
        body["truncated"] = True
    return body


def normalise_kind(kind: str | None) -> str:
    """Artifact kinds in CamelCase as in ML Metadata: ``transform_graph`` -> ``TransformGraph``."""
    if not kind:
        return "Artifact"
    if "_" in kind or kind[0].islower():
        return "".join(part[:1].upper() + part[1:] for part in kind.split("_") if part)
    return kind


class LineageError(PipelineError):
    """The lineage store is missing, unreachable, or holds nothing that matches the question."""


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which we always wrote in UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def database_url(home: Path) -> str:
    """``PIPELINES_LINEAGE_URL`` if set, else the SQLite file ``<home>/lineage.db``."""
    return os.environ.get(URL_ENV) or f"sqlite:///{artifact_store.lineage_db(home)}"


def read_url(home: Path) -> str:
    """The readers' URL: ``PIPELINES_LINEAGE_READ_URL`` (the auditor's read-only role) if set,
    else the writers' :func:`database_url`."""
    return os.environ.get(READ_URL_ENV) or database_url(home)


# The hash chain's canonical form (pipelines.lineage.chain)
GENESIS = "0" * 64
START, END, ADOPTED = "start", "end", "adopted"
START_FIELDS = ("pipeline", "step", "run_id", "dag_id", "dag_run_id", "try_number",
                "triggered_by", "code_version", "config_sha256", "parameters",
                "openlineage_run_id")
END_FIELDS = ("status", "error", "summary")


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def _sha(value: Any) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()


def _time(value: dt.datetime | None) -> str | None:
    """UTC to the microsecond, as both SQLite (naive) and PostgreSQL (aware) hand it back."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


def record_sha256(pipeline: str, seq: int, execution_id: int, phase: str, content_sha256: str,
                  prev_sha256: str) -> str:
    return _sha({"pipeline": pipeline, "seq": seq, "execution": execution_id, "phase": phase,
                 "content_sha256": content_sha256, "prev_sha256": prev_sha256})
