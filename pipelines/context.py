"""Who runs a step and with which code: the run context and the code version lineage records.

Filled by the CLI or by an Airflow task (dags/retrain.py), passed to every step.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from pipelines.config import REPO_ROOT


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def code_version() -> dict[str, Any]:
    """Git sha and dirty flag of the checkout that runs, and the package version."""
    info: dict[str, Any] = {"git_sha": None, "dirty": None}
    try:
        info["package_version"] = metadata.version("retrain-pipelines")
    except metadata.PackageNotFoundError:
        info["package_version"] = None
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        info.update(git_sha=sha, dirty=bool(status.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _run_id() -> str:
    # Microseconds and a random suffix: two runs started in the same second never collide.
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    return f"manual__{stamp}__{uuid.uuid4().hex[:6]}"


@dataclass
class RunContext:
    """Who runs a step: filled by the CLI or by an Airflow task, recorded in lineage."""

    run_id: str = field(default_factory=_run_id)
    dag_id: str | None = None
    dag_run_id: str | None = None
    try_number: int | None = None
    triggered_by: str = "cli"  # cli | schedule | manual | backfill | test
    params: dict[str, Any] = field(default_factory=dict)
    # OpenLineage ids of the Airflow task and DAG run ("namespace/job_name/run_uuid", from the
    # provider's lineage_parent_id / lineage_root_parent_id macros): our events' parent run facet.
    openlineage_parent_id: str | None = None
    openlineage_root_parent_id: str | None = None
    # issue 12: why a retrain run started, when a monitor alarm started it (pipelines.arrival.
    # alarm_request: span, reasons, source runs); the audit report shows it
    trigger: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
