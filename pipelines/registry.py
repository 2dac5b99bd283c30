"""The model registry: TF Serving layout, atomic versions, `production`/`previous` aliases, rollback.

Called by :mod:`pipelines.promote` (push), :mod:`pipelines.evaluate` (the baseline is
:func:`production` at evaluation time), the CLI (`pipelines registry list|show|rollback`), lineage
and the DAG. No TensorFlow here.

Layout under ``<home>/registry/<pipeline>/``::

    1/ 2/ ...        one complete SavedModel per version (TF Serving serves this folder as is),
                     plus registry.json (who pushed it, from which model and evaluation)
    aliases.json     {"production": 2, "previous": 1, "last_version": 2, "versions": [...],
                      "history": [...]}: replaced atomically (os.replace), never edited in place
    .lock            fcntl lock held by every writer: two promotions never interleave

A version folder is copied under a hidden temporary name and renamed into place only when complete.
A version is *registered* once aliases.json lists it; a folder left by a writer killed between the
rename and the alias switch is not registered, never served by an alias, and is moved aside
(``.orphaned-<n>``) by the next writer. Version numbers only grow, orphans included.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines import store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext, utcnow
from pipelines.errors import NotPromoted, PipelineError, UsageError
from pipelines.hashing import sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.store import publish, read_json, write_json_atomic

ALIASES = ("production", "previous")
ALIASES_FILE = "aliases.json"
VERSION_FILE = "registry.json"
# Test hook: the named point of a push at which the process SIGKILLs itself (crash tests only).
FAULT_ENV = "PIPELINES_REGISTRY_FAULT"


def root(cfg: PipelineConfig, home: Path) -> Path:
    return store.root(home, store.Kind.REGISTRY, cfg.name)


def read_aliases(cfg: PipelineConfig, home: Path) -> dict[str, Any]:
    path = root(cfg, home) / ALIASES_FILE
    if not path.is_file():
        return {"pipeline": cfg.name, "production": None, "previous": None, "last_version": 0,
                "versions": [], "history": []}
    return read_json(path)


def _entry(cfg: PipelineConfig, home: Path, version: int | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {"version": version, "uri": str(root(cfg, home) / str(version))}


def production(cfg: PipelineConfig, home: Path) -> dict[str, Any] | None:
    """``{version, uri}`` of the model behind the ``production`` alias, or None."""
    return _entry(cfg, home, read_aliases(cfg, home)["production"])


def previous(cfg: PipelineConfig, home: Path) -> dict[str, Any] | None:
    return _entry(cfg, home, read_aliases(cfg, home)["previous"])


def list_versions(cfg: PipelineConfig, home: Path) -> list[dict[str, Any]]:
    """Registered versions, oldest first, each with its aliases and its registry.json record."""
    aliases = read_aliases(cfg, home)
    out = []
    for v in aliases["versions"]:
        meta_path = root(cfg, home) / str(v) / VERSION_FILE
        meta = read_json(meta_path) if meta_path.is_file() else {}
        out.append({**meta, **_entry(cfg, home, v),
                    "aliases": [a for a in ALIASES if aliases[a] == v]})
    return out


def show(cfg: PipelineConfig, home: Path, ref: str) -> dict[str, Any]:
    """One version by number or alias (``production``, ``previous``)."""
    aliases = read_aliases(cfg, home)
    version = aliases.get(ref) if ref in ALIASES else (int(ref) if ref.isdigit() else None)
    if version is None:
        raise UsageError(f"registry {cfg.name}: {ref!r} is not a version number or an alias "
                         f"that is set ({', '.join(f'{a}={aliases[a]}' for a in ALIASES)})")
    for item in list_versions(cfg, home):
        if item["version"] == version:
            return item
    raise UsageError(f"registry {cfg.name}: no registered version {version}; "
                     f"registered: {aliases['versions']}")


@contextlib.contextmanager
def locked(cfg: PipelineConfig, home: Path) -> Iterator[Path]:
    """Holds the registry's exclusive lock (released by the kernel if the holder dies)."""
    base = root(cfg, home)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield base
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _sweep(base: Path, aliases: dict[str, Any]) -> int:
    """Moves aside what dead writers left; returns the highest version number ever used."""
    highest = aliases["last_version"]
    for p in base.iterdir():
        if p.name.startswith(".tmp-") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.isdigit() and p.is_dir():
            highest = max(highest, int(p.name))
            if int(p.name) not in aliases["versions"]:
                os.rename(p, base / f".orphaned-{p.name}-{utcnow().replace(':', '')}")
    return highest


def push(cfg: PipelineConfig, home: Path, ctx: RunContext, model_dir: str | Path,
         expected_production: int | None, record: dict[str, Any]) -> dict[str, Any]:
    """Copies a SavedModel in as the next version and makes it ``production``.

    Compare-and-swap: ``expected_production`` is the version the candidate was evaluated against;
    if another promotion moved ``production`` meanwhile, nothing is pushed.

    Raises:
        NotPromoted: ``production`` is no longer ``expected_production``.
    """
    with locked(cfg, home) as base:
        aliases = read_aliases(cfg, home)
        if aliases["production"] != expected_production:
            raise NotPromoted(
                f"registry {cfg.name}: production is version {aliases['production']}, but the "
                f"candidate was evaluated against {expected_production}: another promotion won; "
                "re-run evaluate against the current production model")
        version = _sweep(base, aliases) + 1
        meta = {**record, "version": version, "pipeline": cfg.name, "registered_at": utcnow(),
                "run_id": ctx.run_id, "source_uri": str(model_dir)}
        with publish(base / str(version)) as tmp:
            shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
            meta["model_sha256"] = sha256_tree(tmp)
            write_json_atomic(tmp / VERSION_FILE, meta)
            _fault("after_copy")
        _fault("after_publish")
        old = aliases["production"]
        aliases.update(production=version, previous=old if old is not None else aliases["previous"],
                       last_version=version, versions=[*aliases["versions"], version])
        aliases["history"].append({"at": utcnow(), "action": "promote", "production": version,
                                   "previous": aliases["previous"], "run_id": ctx.run_id})
        write_json_atomic(base / ALIASES_FILE, aliases)
    return {"version": version, "registry_uri": str(base / str(version)),
            "previous_version": old, "model_sha256": meta["model_sha256"]}


def rollback(cfg: PipelineConfig, home: Path, ctx: RunContext, reason: str = "") -> dict[str, Any]:
    """Makes ``previous`` production again; the rolled-back version becomes ``previous``.

    Raises:
        PipelineError: there is no ``previous`` version to roll back to.
    """
    with locked(cfg, home) as base:
        aliases = read_aliases(cfg, home)
        prod, prev = aliases["production"], aliases["previous"]
        if prev is None:
            raise PipelineError(f"registry {cfg.name}: no previous version to roll back to "
                                f"(production={prod}); promote a model first")
        aliases.update(production=prev, previous=prod)
        aliases["history"].append({"at": utcnow(), "action": "rollback", "production": prev,
                                   "previous": prod, "run_id": ctx.run_id, "reason": reason})
        write_json_atomic(base / ALIASES_FILE, aliases)
    return {"production": _entry(cfg, home, prev), "previous": _entry(cfg, home, prod),
            "rolled_back_from": prod}


def rollback_step(cfg: PipelineConfig, home: Path, ctx: RunContext, reason: str = "") -> dict:
    """Step `rollback` (runner.STEPS): :func:`rollback` with lineage inputs and outputs."""
    result = rollback(cfg, home, ctx, reason=reason)
    base = root(cfg, home)
    result["reason"] = reason
    result["inputs"] = [artifact(ArtifactKind.MODEL_VERSION, result["previous"]["uri"],
                                 version=result["previous"]["version"], alias="production(before)")]
    result["outputs"] = [
        artifact(ArtifactKind.MODEL_VERSION, result["production"]["uri"],
                 version=result["production"]["version"], alias="production"),
        artifact(ArtifactKind.REGISTRY_ALIASES, base / ALIASES_FILE, sha256=None),
    ]
    return result
