"""The artifact store: the one owner of the layout under ``home`` (``PIPELINES_HOME``).

Every step, the CLI, lineage and the registry ask this module where an artifact lives; nothing else
builds a path under the home. Layout::

    <home>/landing/<pipeline>/<YYYY-MM-DD>/...       default landing area (PIPELINES_LANDING)
    <home>/<kind>/<pipeline>/<artifact id>/          one folder per artifact (Kind below)
        snapshots/  <id>/ + <id>.validation/        ingest output and its validation verdict
        transforms/ models/ evaluations/            complete once their marker file is in them
    <home>/registry/<pipeline>/<version>/ + aliases.json
    <home>/infra_checks/<pipeline>/<key>.json      an infra check run ahead of promote, taken once
    <home>/reports/<pipeline>/<run>.html
    <home>/lineage.db   <home>/openlineage/events.jsonl

An artifact is immutable and published atomically (:func:`publish`: written under a hidden
temporary name, renamed into place in one step). Folders whose name starts with a dot are not
artifacts: ``.tmp-*`` is one being written (its writer locks ``.tmp-*.lock``), ``.<id>.replaced-*``
one set aside by :func:`publish` with ``replace``. A forced re-run of a step writes a new artifact
``<id>-r<N>`` beside the old one (:func:`revision`), never over it.

**An object-store home** (``PIPELINES_HOME=s3://bucket/prefix``, :mod:`pipelines.objstore`):
:func:`resolve_home` returns a local *mirror* folder of the bucket (pulling what other machines
published), and every function here keeps the bucket in step: :func:`publish` uploads an artifact
(its marker file last, then a manifest as the object store's completion marker) before renaming it
into place locally, :func:`synced` holds a lock object in the bucket around a registry change and
pushes it (``aliases.json`` last, conditionally), :func:`resolve_landing` pulls landing files, and
reports are uploaded as they are written. TensorFlow 2.21 has no ``s3://`` file system, so steps
read and write the local mirror; the lineage database stays local (or on PostgreSQL via
``PIPELINES_LINEAGE_URL``). A local-folder home behaves exactly as before.
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

from pipelines import objstore
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
    MONITORING = "monitoring"  # issue 12: one folder per monitored span (pipelines/monitor.py)
    APPROVAL = "approvals"  # issue 12: <run>.json, a person's decision (pipelines/approval.py)
    # issue 11: TFT analyzer accumulators of one span's train rows (pipelines/transform.py)
    ANALYZER_CACHE = "analyzer_cache"
    # issue 11: <key>.json, promote's infra check run ahead during evaluate (infra_check.keep)
    INFRA_CHECK = "infra_checks"


# The file that proves an artifact of a kind is complete (written last), and its record.
MARKERS: dict[Kind, str] = {
    Kind.SNAPSHOT: "provenance.json",
    Kind.TRANSFORM: "transform.json",
    Kind.MODEL: "model.json",
    Kind.EVALUATION: "evaluation.json",
    Kind.MONITORING: "monitoring.json",
}
# Kept for callers that name a kind by its folder.
KINDS: dict[str, str] = {k.value: m for k, m in MARKERS.items()}


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The artifact store root: the argument, else ``PIPELINES_HOME``, else ``<repo>/var``.

    ``s3://bucket/prefix`` gives the bucket's local mirror, brought up to date (one listing, then
    only what was published since); so does a path inside a mirror (a URI another step handed on).
    """
    value = home or os.environ.get(HOME_ENV) or REPO_ROOT / "var"
    text = os.fspath(value)
    if isinstance(value, os.PathLike) and text.startswith(("s3:/", "gs:/")) and "://" not in text:
        text = text.replace(":/", "://", 1)  # a URI given as a Path (typer's --home) lost a slash
    if objstore.is_uri(text):
        mirror = objstore.open_mirror(text)
        mirror.pull()
        mirror.pull_loose(Kind.REGISTRY.value)
        return mirror.folder
    path = Path(text).expanduser().resolve()
    if (path / objstore.REMOTE_FILE).is_file():
        mirror = objstore.open_mirror((path / objstore.REMOTE_FILE).read_text().strip(), path)
        mirror.pull()  # a mirror folder given as a path (a URI another step handed on)
        mirror.pull_loose(Kind.REGISTRY.value)
    return path


def resolve_landing(home: Path, landing: str | os.PathLike | None = None) -> Path:
    """The landing area: the argument, else ``PIPELINES_LANDING``, else ``<home>/landing`` (on an
    object-store home: pulled from ``<bucket prefix>/landing/`` first)."""
    value = landing or os.environ.get(LANDING_ENV)
    if value is None:
        mirror = objstore.mirror_of(home)
        if mirror is not None:
            mirror.pull_loose("landing")
        value = Path(home) / "landing"
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


# A ``.tmp-*`` folder whose writer is gone (killed, machine lost) is swept by the next publish into
# the same parent once it is older than this; a live writer holds a lock on its ``.lock`` file.
STALE_TMP_SECONDS = 15 * 60
_RENAME_EXCHANGE = 2  # renameat2 flag (linux/fs.h): swap two paths in one step


def revision(final: Path) -> Path:
    """Where a forced re-run of the artifact ``final`` goes: the first free ``<name>-r<N>`` sibling.

    A forced re-run never rewrites an artifact lineage may point to; it writes a new one beside it,
    so every recorded chain still finds the exact bytes it recorded.
    """
    final = Path(final)
    taken = {p.name for p in final.parent.glob(f"{final.name}-r*")} if final.parent.is_dir() else set()
    n = 1
    while f"{final.name}-r{n}" in taken:
        n += 1
    return final.parent / f"{final.name}-r{n}"


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot swap
        return False
    raise OSError(err, os.strerror(err), str(b))


def sweep_stale_tmp(parent: Path, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Removes ``.tmp-*`` folders under ``parent`` left by writers that died (kill -9, a lost
    worker): older than ``max_age`` seconds and whose lock no live process holds."""
    import fcntl
    import time

    removed: list[Path] = []
    if not Path(parent).is_dir():
        return removed
    now = time.time()
    for tmp in Path(parent).glob(".tmp-*"):
        if tmp.suffix == ".lock" or not tmp.is_dir() or tmp.is_symlink():
            continue
        try:
            if now - tmp.stat().st_mtime < max_age:
                continue
        except FileNotFoundError:
            continue
        lock = tmp.with_name(tmp.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None  # no lock file: a writer from before locks, or one that died at once
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            removed.append(tmp)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


@contextlib.contextmanager
def publish(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yields a temporary sibling folder; on success renames it to ``final`` in one step.

    Readers never see half an artifact: on error the temporary folder is removed and ``final`` is
    not created. If ``final`` exists (a concurrent writer of the same content-addressed artifact),
    the new copy is dropped and the existing one kept. ``replace`` swaps the new folder in for an
    existing one in one step (Linux ``renameat2`` exchange: a reader finds the old complete folder
    or the new one, never none) and keeps the old one as a hidden ``.<name>.replaced-<time>``
    sibling. Steps never replace an artifact lineage points to: a forced re-run publishes under
    :func:`revision` instead.

    The temporary folder's writer holds a lock on ``<tmp>.lock``; each publish sweeps the
    ``.tmp-*`` folders of dead writers older than :data:`STALE_TMP_SECONDS` (:func:`sweep_stale_tmp`).
    """
    import fcntl

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_tmp(final.parent)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    lock = tmp.with_name(tmp.name + ".lock")
    lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)  # held until this writer finishes or dies
    try:
        tmp.mkdir()
        try:
            yield tmp
            mirror = objstore.mirror_of(final.parent)
            if mirror is not None and not _push(mirror, tmp, final, replace):
                shutil.rmtree(tmp, ignore_errors=True)  # another writer published it first
                return
            if replace and final.exists():
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
                aside = final.parent / f".{final.name}.replaced-{stamp}-{uuid.uuid4().hex[:6]}"
                if _exchange(tmp, final):
                    tmp, swapped = aside, tmp  # the old folder is now at the temporary name
                    os.rename(swapped, aside)
                    return
                os.rename(final, aside)  # no atomic swap on this file system: a short gap
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
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(lock_fd)


# The file uploaded last of an artifact of each kind (before its manifest): its own marker.
UPLOADED_LAST: dict[str, str] = {**KINDS, Kind.REGISTRY.value: "registry.json"}
# Loose files written under these folders of an object-store home are uploaded as they are written
# (landing files are only pulled: producers write them to the bucket).
PUSHED_LOOSE = (Kind.REPORT.value,)


def _push(mirror: objstore.Mirror, tmp: Path, final: Path, replace: bool) -> bool:
    """Uploads the finished ``tmp`` as ``final`` (see :meth:`objstore.Mirror.push_folder`); False
    when another writer published ``final`` first (then theirs is pulled into place instead)."""
    if replace:
        raise PipelineError(f"cannot replace {final} on an object-store home ({mirror.loc.uri}): "
                            "published objects are immutable there; publish a revision instead")
    rel = mirror.rel(final)
    if mirror.push_folder(tmp, final, UPLOADED_LAST.get(rel.split("/", 1)[0])) is not None:
        return True
    theirs = mirror.published(rel)
    if theirs is not None and not final.exists():
        mirror.pull_folder(rel, theirs)
    return False


@contextlib.contextmanager
def synced(folder: Path) -> Iterator[None]:
    """Around a change to ``folder`` (the registry of a pipeline) by a writer holding its local
    lock: on an object-store home, the bucket's lock too, the mirror brought up to date before and
    the change uploaded after (:meth:`objstore.Mirror.synced`). Nothing on a local home."""
    mirror = objstore.mirror_of(folder)
    if mirror is None:
        yield
        return
    with mirror.synced(folder):
        yield


def _push_loose(target: Path) -> None:
    mirror = objstore.mirror_of(target.parent)
    if mirror is not None:
        rel = mirror.rel(target)
        if rel.split("/", 1)[0] in PUSHED_LOOSE and not any(
                part.startswith(".") for part in rel.split("/")):
            mirror.push_file(target)


def write_json_atomic(target: Path, obj: Any) -> None:
    """Writes JSON to a temporary name, then renames it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, target)
    _push_loose(target)


def write_text_atomic(target: Path, text: str) -> None:
    """Writes text to a temporary name, then renames it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    _push_loose(target)


def read_json(file: str | os.PathLike) -> Any:
    return json.loads(Path(file).read_text())
