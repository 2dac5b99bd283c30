"""The artifact store: the one owner of the layout under ``home`` (``PIPELINES_HOME``).

Every step, the CLI, lineage and the registry ask this module where an artifact lives; nothing else
builds a path under the home. Layout::

    <home>/landing/<pipeline>/<YYYY-MM-DD>/...       default landing area (PIPELINES_LANDING)
    <home>/<kind>/<pipeline>/<artifact id>/          one folder per artifact (Kind below)
        snapshots/  <id>/ + <id>.validation/        ingest output and its validation verdict
        transforms/ models/ evaluations/            complete once their marker file is in them
    <home>/registry/<pipeline>/<version>/ + aliases.json
    <home>/reports/<pipeline>/<run>.html
    <home>/lineage.db   <home>/openlineage/events.jsonl

An artifact is immutable and published atomically (:func:`publish`: written under a hidden
temporary name, renamed into place in one step). Folders whose name starts with a dot are not
artifacts: ``.tmp-*`` is one being written, ``.<id>.replaced-*`` one set aside by a forced re-run.
An object-store home would plug in here (the paths below are the only ones the code builds).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipelines.config import REPO_ROOT
from pipelines.errors import PipelineError

HOME_ENV = "PIPELINES_HOME"
LANDING_ENV = "PIPELINES_LANDING"


class Kind(StrEnum):
    """Artifact kinds: the folder under the home that holds them."""

    SNAPSHOT = "snapshots"
    TRANSFORM = "transforms"
    MODEL = "models"
    EVALUATION = "evaluations"
    REGISTRY = "registry"
    REPORT = "reports"


# The file that proves an artifact of a kind is complete (written last), and its record.
MARKERS: dict[Kind, str] = {
    Kind.SNAPSHOT: "provenance.json",
    Kind.TRANSFORM: "transform.json",
    Kind.MODEL: "model.json",
    Kind.EVALUATION: "evaluation.json",
}
# Kept for callers that name a kind by its folder.
KINDS: dict[str, str] = {k.value: m for k, m in MARKERS.items()}


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The artifact store root: the argument, else ``PIPELINES_HOME``, else ``<repo>/var``."""
    value = home or os.environ.get(HOME_ENV) or REPO_ROOT / "var"
    return Path(value).expanduser().resolve()


def resolve_landing(home: Path, landing: str | os.PathLike | None = None) -> Path:
    """The landing area: the argument, else ``PIPELINES_LANDING``, else ``<home>/landing``."""
    value = landing or os.environ.get(LANDING_ENV) or Path(home) / "landing"
    return Path(value).expanduser().resolve()


def root(home: str | os.PathLike, kind: Kind | str, pipeline: str) -> Path:
    """The folder holding every artifact of ``kind`` for ``pipeline``."""
    return Path(home) / Kind(kind).value / pipeline


def path(home: str | os.PathLike, kind: Kind | str, pipeline: str, artifact_id: str) -> Path:
    """Where the artifact ``artifact_id`` of ``kind`` lives (it may not exist yet)."""
    if not artifact_id or "/" in artifact_id or artifact_id.startswith("."):
        raise PipelineError(f"{artifact_id!r} is not an artifact id")
    return root(home, kind, pipeline) / artifact_id


def report_path(home: str | os.PathLike, pipeline: str, name: str) -> Path:
    return root(home, Kind.REPORT, pipeline) / f"{name}.html"


def lineage_db(home: str | os.PathLike) -> Path:
    return Path(home) / "lineage.db"


def openlineage_events(home: str | os.PathLike) -> Path:
    return Path(home) / "openlineage" / "events.jsonl"


def newest(home: Path, kind: Kind | str, pipeline: str, marker: str | None = None) -> Path | None:
    """The newest complete artifact folder of ``kind`` for ``pipeline``, or ``None`` if none.

    Newest by the modification time of its marker file (written last), ties broken by name.
    """
    marker = marker or MARKERS[Kind(kind)]
    base = root(home, kind, pipeline)
    if not base.is_dir():
        return None
    candidates = []
    for folder in base.iterdir():
        if folder.name.startswith("."):
            continue
        try:
            info = (folder / marker).stat()
        except (FileNotFoundError, NotADirectoryError):  # not an artifact, or being replaced
            continue
        if stat.S_ISREG(info.st_mode):
            candidates.append((info.st_mtime_ns, folder.name, folder))
    return max(candidates)[2] if candidates else None


def load_record(uri: str | os.PathLike, kind: Kind | str, hint: str = "") -> dict[str, Any]:
    """The record (marker JSON) of the artifact at ``uri``; a clear error when it is not one."""
    marker = MARKERS[Kind(kind)]
    record = Path(uri) / marker
    if not record.is_file():
        what = Kind(kind).value.rstrip("s")
        raise PipelineError(f"{uri} is not a {what} artifact (no {marker})"
                            + (f"; {hint}" if hint else ""))
    return read_json(record)


@contextlib.contextmanager
def publish(final: Path, replace: bool = False) -> Iterator[Path]:
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


def write_json_atomic(target: Path, obj: Any) -> None:
    """Writes JSON to a temporary name, then renames it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, target)


def write_text_atomic(target: Path, text: str) -> None:
    """Writes text to a temporary name, then renames it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


def read_json(file: str | os.PathLike) -> Any:
    return json.loads(Path(file).read_text())
