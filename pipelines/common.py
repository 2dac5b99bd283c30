"""Shared plumbing for every step: the artifact store, hashing, atomic writes, run context, errors.

Called by all step modules, the CLI and the DAG tasks. Cheap to import (no TensorFlow, no Beam).

Artifact store layout under ``home`` (``PIPELINES_HOME``, default ``<repo>/var``)::

    landing/<pipeline>/<YYYY-MM-DD>/part-*.csv       demo spans (any landing path works)
    snapshots/<pipeline>/<snapshot_id>/              ingest output (immutable)
        train/data-*.tfrecord  eval/data-*.tfrecord  (golden sets: test/data-*.tfrecord)
        malformed.jsonl  provenance.json  validation/...
    transforms/<pipeline>/<id>/   models/<pipeline>/<id>/   evaluations/<pipeline>/<id>/
    registry/<pipeline>/<version>/ + registry/<pipeline>/aliases.json
    lineage.db   openlineage/events.jsonl   reports/<pipeline>/<run_id>.html
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.config import REPO_ROOT

# Exit codes of the `pipelines` CLI (DESIGN.md, Contracts).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_PROMOTED = 3
EXIT_DATA_REJECTED = 4


class PipelineError(Exception):
    """An expected failure with a message for a person; ``exit_code`` for the CLI."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.result = result or {}


class UsageError(PipelineError):
    exit_code = EXIT_USAGE


class DataRejected(PipelineError):
    """Validation rejected a snapshot. ``result`` holds the validation record."""

    exit_code = EXIT_DATA_REJECTED


class NotPromoted(PipelineError):
    """The run completed but the candidate was not promoted. ``result`` holds the reasons."""

    exit_code = EXIT_NOT_PROMOTED


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The artifact store root: the argument, else ``PIPELINES_HOME``, else ``<repo>/var``."""
    value = home or os.environ.get("PIPELINES_HOME") or REPO_ROOT / "var"
    return Path(value).expanduser().resolve()


def resolve_landing(home: Path, landing: str | os.PathLike | None = None) -> Path:
    """The landing area: the argument, else ``PIPELINES_LANDING``, else ``<home>/landing``."""
    value = landing or os.environ.get("PIPELINES_LANDING") or home / "landing"
    return Path(value).expanduser().resolve()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: str | os.PathLike) -> str:
    """Content hash of a directory: relative paths and file hashes, in sorted order."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_dir(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yields a temporary sibling folder; on success renames it to ``final`` in one step.

    Readers never see half an artifact: on error the temporary folder is removed and ``final`` is
    not created. If ``final`` exists (a concurrent writer of the same content-addressed artifact),
    the new copy is dropped and the existing one kept, unless ``replace`` (a forced re-run): then
    the existing folder is set aside as a hidden ``.<name>.replaced-<time>`` sibling, never deleted.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if replace and final.exists():
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            os.rename(final, final.parent / f".{final.name}.replaced-{stamp}-{uuid.uuid4().hex[:6]}")
        try:
            os.rename(tmp, final)
        except OSError:
            if final.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Writes JSON to a temporary name, then renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


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


@dataclass
class RunContext:
    """Who runs a step: filled by the CLI or by an Airflow task, recorded in lineage."""

    run_id: str = field(default_factory=lambda: f"manual__{utcnow()}__{uuid.uuid4().hex[:6]}")
    dag_id: str | None = None
    dag_run_id: str | None = None
    try_number: int | None = None
    triggered_by: str = "cli"  # cli | schedule | manual | backfill | test
    params: dict[str, Any] = field(default_factory=dict)
    # OpenLineage ids of the Airflow task and DAG run ("namespace/job_name/run_uuid", from the
    # provider's lineage_parent_id / lineage_root_parent_id macros): our events' parent run facet.
    openlineage_parent_id: str | None = None
    openlineage_root_parent_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def artifact(kind: str, uri: str | os.PathLike, sha256: str | None = None, size: int | None = None,
             **properties: Any) -> dict[str, Any]:
    """The artifact record every step returns in its ``inputs`` and ``outputs`` lists."""
    return {"kind": kind, "uri": str(uri), "sha256": sha256, "size": size, "properties": properties}
