"""The model registry: TF Serving layout, atomic versions, `production`/`previous`/`shadow` aliases.

Called by :mod:`pipelines.promote` (push), :mod:`pipelines.evaluate` (the baseline is
:func:`production` at evaluation time), the CLI (`pipelines registry list|show|rollback|repair`),
lineage and the DAG. No TensorFlow here.

Layout under ``<home>/registry/<pipeline>/``::

    1/ 2/ ...        one complete SavedModel per version (TF Serving serves this folder as is),
                     plus registry.json (who pushed it, from which model and evaluation)
    aliases.json     the current state: {"production": 2, "previous": 1, "shadow": 3,
                     "shadow_since": "<utc>", "shadow_baseline": 2, "stack": [1, 2],
                     "versions": [1, 2, 3], "hashes": {"2": {"sha256", "model_sha256"}}, "seq": 3,
                     "history": [...]}; replaced atomically and fsynced, never edited in place
    history/<seq>.json  the same state after each change, immutable: what lineage records (so
                     ``lineage verify`` re-hashes a file that never changes) and what
                     ``registry repair`` rebuilds a lost aliases.json from
    models.config    TF Serving's model config following the aliases (:mod:`pipelines.serving_config`)
    .intent.json     a prepared change (write-ahead): present only while a writer is between
                     "version ready" and "aliases moved", or after it died there
    .lock            fcntl lock held by every writer: two changes never interleave

**One change, one record.** A writer (push, rollback) prepares the change under the lock: the new
version folder (copied under a hidden name, renamed when complete, hashed: it must be the model
that was evaluated), its infra check, the history entry and the intent file. Then it calls
``commit``, which records the change in lineage (one database transaction), and only then moves the
aliases and removes the intent. If ``commit`` fails, production does not move. A writer killed at
any point leaves either nothing visible or an intent; the next writer resolves the intent first:
recorded in lineage -> completed (aliases moved), not recorded -> undone (the version folder and
the history entry set aside). ``FAULT_ENV`` names the point at which a test kills the writer.

**Production history.** ``stack`` lists the versions that served as production, oldest first,
without those rolled back. Rollback goes to the version before the current one (``previous``) and
drops the current one from the stack, so a second rollback goes further back instead of restoring
the bad model; ``--to N`` pins any registered version. A version is only aliased after its folder is
re-hashed against the hash recorded when it was pushed.

**Shadow** (``promotion.policy: shadow``, :mod:`pipelines.shadow`). ``push(alias="shadow")``
registers a blessed candidate as the ``shadow`` alias, judged beside the production version it was
evaluated against (``shadow_baseline``); production does not move. A newer shadow replaces an older
undecided one (the history entry names the replaced version). :func:`promote_shadow` makes it
production through the same prepare/record/apply path (``previous`` set, the shadow cleared);
:func:`drop_shadow` clears it with its reasons (the version stays registered, unaliased). Any other
production change (a promote under ``auto``, a rollback) clears a pending shadow, since it was
judged against a production model that no longer serves; the history entry says so
(``shadow_cleared``). TF Serving's ``canary`` label follows the shadow.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import getpass
import hashlib
import json
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipelines import serving_config, store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext, utcnow
from pipelines.errors import NotPromoted, PipelineError, UsageError
from pipelines.hashing import sha256_file, sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.store import publish, read_json

ALIASES = ("production", "previous", "shadow")
ALIASES_FILE = "aliases.json"
INTENT_FILE = ".intent.json"
HISTORY_DIR = "history"
VERSION_FILE = "registry.json"
# Test hook: the named point of a change at which the process SIGKILLs itself (crash tests only).
FAULT_ENV = "PIPELINES_REGISTRY_FAULT"
FAULT_POINTS = ("after_copy", "after_publish", "after_check", "after_intent", "after_record",
                "after_aliases")

Commit = Callable[[dict[str, Any]], None]


class RegistryError(PipelineError):
    """The registry's own files are damaged or disagree with each other."""


def root(cfg: PipelineConfig, home: Path) -> Path:
    return store.root(home, store.Kind.REGISTRY, cfg.name)


def _empty(cfg: PipelineConfig) -> dict[str, Any]:
    return {"pipeline": cfg.name, "production": None, "previous": None, "shadow": None,
            "shadow_since": None, "shadow_baseline": None, "last_version": 0,
            "versions": [], "stack": [], "hashes": {}, "seq": 0, "history": []}


def _repair_hint(cfg: PipelineConfig) -> str:
    return (f"run `pipelines registry repair configs/{cfg.name}.yaml` to rebuild it from the "
            f"newest entry of {HISTORY_DIR}/ (or restore it from a backup)")


def _normalise(cfg: PipelineConfig, doc: Any, path: Path) -> dict[str, Any]:
    """A state document with every key, or a RegistryError naming what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list) or any(
            not isinstance(v, int) for v in doc["versions"]):
        raise RegistryError(f"registry {cfg.name}: {path} is not a registry alias file (no list of "
                            f"version numbers); {_repair_hint(cfg)}")
    out = {**_empty(cfg), **doc}
    if "stack" not in doc:  # written before the production history existed
        out["stack"] = [v for v in (doc.get("previous"), doc.get("production")) if v is not None]
    for alias in ALIASES:
        if out[alias] is not None and out[alias] not in out["versions"]:
            raise RegistryError(f"registry {cfg.name}: {path} sets {alias} to version "
                                f"{out[alias]}, which it does not register; {_repair_hint(cfg)}")
    return out


def _load(cfg: PipelineConfig, base: Path) -> dict[str, Any]:
    path = base / ALIASES_FILE
    if not path.exists():
        # Without a committed history entry, version folders are leftovers of pushes that never
        # completed (the next writer sets them aside); with one, the file was lost.
        history = sorted((base / HISTORY_DIR).glob("[0-9]*.json")) if base.is_dir() else []
        with contextlib.suppress(OSError, ValueError, KeyError):
            pending = Path(read_json(base / INTENT_FILE)["journal"])
            history = [h for h in history if h != pending]  # not committed yet
        if history:
            leftovers = sorted(p.name for p in base.iterdir() if p.name.isdigit())
            raise RegistryError(
                f"registry {cfg.name}: {path} is missing, but the registry holds version folders "
                f"{leftovers} and {len(history)} history entries; nothing was changed. "
                f"{_repair_hint(cfg)}")
        return _empty(cfg)
    try:
        text = path.read_text()
        doc = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"registry {cfg.name}: {path} is damaged ({type(exc).__name__}: "
                            f"{exc}); nothing was changed. {_repair_hint(cfg)}") from exc
    return _normalise(cfg, doc, path)


def read_aliases(cfg: PipelineConfig, home: Path) -> dict[str, Any]:
    """The registry's current state (see the module doc); RegistryError if the file is damaged."""
    return _load(cfg, root(cfg, home))


def _ref(cfg: PipelineConfig, home: Path, version: int) -> dict[str, Any]:
    return {"version": version, "uri": str(root(cfg, home) / str(version))}


def _entry(cfg: PipelineConfig, home: Path, version: int | None) -> dict[str, Any] | None:
    return None if version is None else _ref(cfg, home, version)


def production(cfg: PipelineConfig, home: Path) -> dict[str, Any] | None:
    """``{version, uri}`` of the model behind the ``production`` alias, or None."""
    return _entry(cfg, home, read_aliases(cfg, home)["production"])


def previous(cfg: PipelineConfig, home: Path) -> dict[str, Any] | None:
    return _entry(cfg, home, read_aliases(cfg, home)["previous"])


def shadow(cfg: PipelineConfig, home: Path) -> dict[str, Any] | None:
    """``{version, uri, since, baseline}`` of the pending shadow candidate, or None."""
    aliases = read_aliases(cfg, home)
    ref = _entry(cfg, home, aliases["shadow"])
    return None if ref is None else {**ref, "since": aliases["shadow_since"],
                                     "baseline": aliases["shadow_baseline"]}


def recorded_hashes(cfg: PipelineConfig, home: Path, version: int) -> dict[str, Any]:
    """``{"sha256": folder, "model_sha256": SavedModel}`` as recorded when ``version`` was pushed."""
    aliases = read_aliases(cfg, home)
    return _hashes(root(cfg, home), aliases, version)


def _hashes(base: Path, aliases: dict[str, Any], version: int) -> dict[str, Any]:
    rec = dict(aliases["hashes"].get(str(version)) or {})
    meta = base / str(version) / VERSION_FILE
    if "model_sha256" not in rec and meta.is_file():  # a version pushed before hashes were kept
        with contextlib.suppress(OSError, ValueError):
            rec["model_sha256"] = read_json(meta).get("model_sha256")
    return rec


def list_versions(cfg: PipelineConfig, home: Path) -> list[dict[str, Any]]:
    """Registered versions, oldest first, each with its aliases and its registry.json record."""
    aliases = read_aliases(cfg, home)
    out = []
    for v in aliases["versions"]:
        meta_path = root(cfg, home) / str(v) / VERSION_FILE
        meta = {}
        if meta_path.is_file():
            with contextlib.suppress(OSError, ValueError):
                meta = read_json(meta_path)
        out.append({**meta, **_ref(cfg, home, v),
                    "aliases": [a for a in ALIASES if aliases[a] == v],
                    "present": (root(cfg, home) / str(v)).is_dir()})
    return out


def show(cfg: PipelineConfig, home: Path, ref: str) -> dict[str, Any]:
    """One version by number or alias (``production``, ``previous``, ``shadow``)."""
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
            with store.synced(base):  # an object-store home: its lock, pulled before, pushed after
                yield base
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fault(point: str) -> None:
    assert point in FAULT_POINTS, point
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


# --- durable writes --------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(target: Path, data: bytes) -> None:
    """Writes ``data`` to a temporary name, fsyncs it, renames it into place, fsyncs the folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in sorted((q for q in path.rglob("*") if q.is_dir()), reverse=True):
        _fsync_dir(d)
    _fsync_dir(path)


def _model_sha(folder: Path) -> str:
    """:func:`sha256_tree` of a version folder without its registry.json: the SavedModel alone."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        rel = p.relative_to(folder).as_posix()
        if rel == VERSION_FILE:
            continue
        h.update(rel.encode() + b"\0")
        h.update(sha256_file(p).encode() + b"\n")
    return h.hexdigest()


# --- write-ahead intents -----------------------------------------------------------------------

def _sweep(base: Path, aliases: dict[str, Any]) -> int:
    """Moves aside what dead writers left; returns the highest version number ever used."""
    highest = aliases["last_version"]
    for p in base.iterdir():
        if p.name.startswith(".tmp-"):  # under the registry lock: a dead writer's leftovers
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        elif p.name.isdigit() and p.is_dir():
            highest = max(highest, int(p.name))
            if int(p.name) not in aliases["versions"]:
                os.rename(p, base / f".orphaned-{p.name}-{utcnow().replace(':', '')}")
    return highest


def _prepare(base: Path, new: dict[str, Any], version: int | None, lineage: bool) -> dict[str, Any]:
    """Writes the history entry and the intent (both fsynced); the aliases do not move yet."""
    journal = base / HISTORY_DIR / f"{new['seq']:06d}.json"
    data = _dump(new)
    intent = {"id": uuid.uuid4().hex, "journal": str(journal),
              "journal_sha256": hashlib.sha256(data).hexdigest(), "version": version,
              "lineage": lineage, "created": utcnow()}
    # Intent first: a history entry never exists without its intent until the change is applied.
    _write_durable(base / INTENT_FILE, _dump(intent))
    _write_durable(journal, data)
    return intent


def _apply(base: Path, intent: dict[str, Any]) -> dict[str, Any]:
    """Completes a prepared change: aliases.json becomes the history entry, the intent goes."""
    data = Path(intent["journal"]).read_bytes()
    _write_durable(base / ALIASES_FILE, data)
    serving_config.write_for(base, json.loads(data))  # issue 12: TF Serving follows the aliases
    _fault("after_aliases")
    (base / INTENT_FILE).unlink(missing_ok=True)
    _fsync_dir(base)
    return json.loads(data)


def _undo(base: Path, intent: dict[str, Any]) -> None:
    """Abandons a prepared change: aliases untouched, history entry and version set aside."""
    stamp = utcnow().replace(":", "")
    journal = Path(intent["journal"])
    if journal.exists():
        os.rename(journal, journal.with_name(f".undone-{journal.stem}-{stamp}.json"))
    if intent.get("version") is not None and (base / str(intent["version"])).is_dir():
        os.rename(base / str(intent["version"]), base / f".orphaned-{intent['version']}-{stamp}")
    (base / INTENT_FILE).unlink(missing_ok=True)
    _fsync_dir(base)


def _resolve(cfg: PipelineConfig, home: Path, base: Path) -> str | None:
    """Resolves a pending intent (completed if lineage recorded it, else undone); returns what was
    done, or None when there was none.

    Raises:
        RegistryError: the lineage store cannot be asked (then nothing is decided or changed).
    """
    path = base / INTENT_FILE
    if not path.exists():
        return None
    try:
        intent = read_json(path)
    except (OSError, ValueError):  # the intent is written durably before it matters: a torn one
        path.unlink()  # means the writer died before preparing anything the aliases point at
        return "undone"
    journal = Path(intent["journal"])
    if not journal.is_file() or sha256_file(journal) != intent["journal_sha256"]:
        _undo(base, intent)
        return "undone"
    if not intent.get("lineage"):
        _apply(base, intent)
        return "completed"
    from pipelines.lineage.evidence import change_recorded

    try:
        recorded = change_recorded(home, cfg.name, str(journal), intent["journal_sha256"])
    except Exception as exc:  # noqa: BLE001 - any store failure: decide nothing
        raise RegistryError(
            f"registry {cfg.name}: a change prepared at {intent['created']} ({journal.name}) is "
            f"pending and the lineage store cannot say whether it was recorded ({exc}); nothing "
            "was changed. Make the lineage store reachable and run the command again") from exc
    if recorded:
        _apply(base, intent)
        return "completed"
    _undo(base, intent)
    return "undone"


def _change(cfg: PipelineConfig, home: Path, base: Path, new: dict[str, Any],
            version: int | None, out: dict[str, Any], commit: Commit | None) -> dict[str, Any]:
    """Prepare, record (``commit``), apply: the aliases move only once lineage holds the change."""
    intent = _prepare(base, new, version, lineage=commit is not None)
    out.update(journal_uri=intent["journal"], journal_sha256=intent["journal_sha256"])
    _fault("after_intent")
    if commit is not None:
        try:
            commit(out)
        except BaseException:
            with contextlib.suppress(Exception):  # undone now if lineage lacks it; else left to
                _resolve(cfg, home, base)  # the next writer, who asks lineage again
            raise
    _fault("after_record")
    _apply(base, intent)
    return out


def _history_entry(ctx: RunContext, action: str, **fields: Any) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for this uid (containers)
        user = str(os.getuid())
    return {"at": utcnow(), "action": action, "run_id": ctx.run_id, "user": user,
            "triggered_by": ctx.triggered_by, "dag_run_id": ctx.dag_run_id, **fields}


def _verified(cfg: PipelineConfig, base: Path, aliases: dict[str, Any], version: int) -> dict:
    """The recorded hashes of a version whose folder is present and unchanged; else a refusal."""
    folder = base / str(version)
    if not folder.is_dir():
        raise RegistryError(f"registry {cfg.name}: version {version} is registered but its folder "
                            f"{folder} is missing; it cannot serve. Restore the folder from a "
                            "backup, or choose another version")
    rec = _hashes(base, aliases, version)
    if rec.get("sha256"):
        ok, actual, want = sha256_tree(folder) == rec["sha256"], None, rec["sha256"]
    elif rec.get("model_sha256"):
        actual, want = _model_sha(folder), rec["model_sha256"]
        ok = actual == want
    else:
        raise RegistryError(f"registry {cfg.name}: version {version} has no recorded hash to "
                            "check its folder against; it cannot be restored safely")
    if not ok:
        raise RegistryError(f"registry {cfg.name}: version {version} at {folder} no longer "
                            f"matches the hash recorded when it was pushed ({want[:12]}); its "
                            "files changed. Restore them from a backup, or choose another version")
    return rec


def _clear_shadow(new: dict[str, Any], why: str) -> dict[str, Any] | None:
    """Clears a pending shadow in ``new`` (production is moving under it); what was cleared."""
    if new.get("shadow") is None:
        return None
    cleared = {"version": new["shadow"], "baseline": new.get("shadow_baseline"), "why": why}
    new.update(shadow=None, shadow_since=None, shadow_baseline=None)
    return cleared


def push(cfg: PipelineConfig, home: Path, ctx: RunContext, model_dir: str | Path,
         expected_production: int | None, record: dict[str, Any], *,
         expected_sha256: str | None = None,
         check: Callable[[Path], dict[str, Any]] | None = None,
         commit: Commit | None = None, alias: str = "production") -> dict[str, Any]:
    """Copies a SavedModel in as the next version and makes it ``production`` (or ``shadow``).

    With ``alias="shadow"`` production does not move: the version becomes the shadow candidate,
    judged against the current production (``shadow_baseline``), and replaces an undecided one.

    Compare-and-swap: ``expected_production`` is the version the candidate was evaluated against;
    if another promotion moved ``production`` meanwhile, nothing is pushed. ``expected_sha256`` is
    the evaluated model's hash: the copy must hash to it, and a candidate equal to production is
    not pushed again. ``check`` (the infra check) runs on the copy in the registry before any alias
    moves; ``commit`` records the change in lineage (see the module doc).

    Raises:
        NotPromoted: production moved, the candidate is production (or the shadow) already, the
            copy is not the evaluated model, or ``check`` did not pass (``result["infra_check"]``).
    """
    if alias not in ("production", "shadow"):
        raise UsageError(f"registry {cfg.name}: push makes a version production or shadow, "
                         f"not {alias!r}")
    with locked(cfg, home) as base:
        _resolve(cfg, home, base)
        aliases = _load(cfg, base)
        prod = aliases["production"]
        if prod != expected_production:
            raise NotPromoted(
                f"registry {cfg.name}: production is version {prod}, but the "
                f"candidate was evaluated against {expected_production}: another promotion won; "
                "re-run evaluate against the current production model")
        if expected_sha256 and prod is not None and \
                _hashes(base, aliases, prod).get("model_sha256") == expected_sha256:
            raise NotPromoted(f"already in production: version {prod} of {cfg.name} is this very "
                              f"model (sha256 {expected_sha256[:12]}); no new version registered",
                              {"already_in_production": True, "version": prod})
        if alias == "shadow" and prod is None:
            raise UsageError(f"registry {cfg.name}: no version in production to judge a shadow "
                             "against; push the first model as production")
        old_shadow = aliases["shadow"]
        if expected_sha256 and alias == "shadow" and old_shadow is not None and \
                _hashes(base, aliases, old_shadow).get("model_sha256") == expected_sha256:
            raise NotPromoted(f"already the shadow: version {old_shadow} of {cfg.name} is this "
                              f"very model (sha256 {expected_sha256[:12]}); no new version "
                              "registered", {"already_shadow": True, "version": old_shadow})
        version = _sweep(base, aliases) + 1
        meta = {**record, "version": version, "pipeline": cfg.name, "registered_at": utcnow(),
                "run_id": ctx.run_id, "source_uri": str(model_dir)}
        with publish(base / str(version)) as tmp:
            shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
            meta["model_sha256"] = sha256_tree(tmp)
            if expected_sha256 and meta["model_sha256"] != expected_sha256:
                raise NotPromoted(
                    f"the model at {model_dir} changed since it was evaluated: the registry copy "
                    f"hashes to {meta['model_sha256'][:12]}, the evaluation audited "
                    f"{expected_sha256[:12]}; nothing was registered. Evaluate the model you mean "
                    "to ship, and keep its folder unchanged until promote has run")
            store.write_json_atomic(tmp / VERSION_FILE, meta)
            _fsync_tree(tmp)
            _fault("after_copy")
        _fsync_dir(base)
        folder = base / str(version)
        _fault("after_publish")
        checked = None
        if check is not None:
            checked = check(folder)
            if not checked.get("passed"):
                os.rename(folder, base / f".failed-{version}-{utcnow().replace(':', '')}")
                raise NotPromoted("infra check failed: " + "; ".join(checked.get("reasons") or []),
                                  {"infra_check": checked})
        _fault("after_check")
        folder_sha = sha256_tree(folder)
        new = copy.deepcopy(aliases)
        new.update(last_version=version, versions=[*aliases["versions"], version],
                   seq=aliases["seq"] + 1)
        new["hashes"][str(version)] = {"sha256": folder_sha, "model_sha256": meta["model_sha256"]}
        out = {"version": version, "registry_uri": str(folder), "previous_version": prod,
               "model_sha256": meta["model_sha256"], "sha256": folder_sha, "infra_check": checked,
               "alias": alias, "replaced_shadow": None, "shadow_cleared": None}
        if alias == "shadow":
            new.update(shadow=version, shadow_since=utcnow(), shadow_baseline=prod)
            out["replaced_shadow"] = old_shadow
            new["history"].append(_history_entry(ctx, "shadow", shadow=version, production=prod,
                                                 replaced_shadow=old_shadow, seq=new["seq"]))
        else:
            stack = [*aliases["stack"], version]
            new.update(production=version, previous=stack[-2] if len(stack) > 1 else None,
                       stack=stack)
            out["shadow_cleared"] = _clear_shadow(
                new, f"production moved from {prod} to {version} by a promotion")
            new["history"].append(_history_entry(ctx, "promote", production=version,
                                                 previous=new["previous"], seq=new["seq"],
                                                 shadow_cleared=out["shadow_cleared"]))
        return _change(cfg, home, base, new, version, out, commit)


def rollback(cfg: PipelineConfig, home: Path, ctx: RunContext, reason: str = "",
             to: int | None = None, commit: Commit | None = None) -> dict[str, Any]:
    """Makes an earlier version production: ``to``, else the one before the current production.

    The current production leaves the production history, so rolling back again goes further
    back. The target's folder is re-hashed against its push record first.

    Raises:
        PipelineError: nothing to roll back to, ``to`` is not registered or is production already.
        RegistryError: the target's folder is missing or changed.
    """
    with locked(cfg, home) as base:
        _resolve(cfg, home, base)
        aliases = _load(cfg, base)
        prod, stack = aliases["production"], list(aliases["stack"])
        if to is None:
            if len(stack) < 2:
                raise PipelineError(
                    f"registry {cfg.name}: no earlier production version to roll back to "
                    f"(production={prod}, registered: {aliases['versions']}); name one with "
                    "--to N" if aliases["versions"] else f"registry {cfg.name} is empty; "
                    "promote a model first")
            target = stack[-2]
        else:
            target = int(to)
            if target not in aliases["versions"]:
                raise UsageError(f"registry {cfg.name}: no registered version {target}; "
                                 f"registered: {aliases['versions']}")
            if target == prod:
                raise UsageError(f"registry {cfg.name}: version {target} is production already")
        hashes = _verified(cfg, base, aliases, target)
        stack = stack[:stack.index(target) + 1] if target in stack else [*stack, target]
        new = copy.deepcopy(aliases)
        new.update(production=target, previous=stack[-2] if len(stack) > 1 else None,
                   stack=stack, seq=aliases["seq"] + 1)
        cleared = _clear_shadow(new, f"production rolled back from {prod} to {target}: the "
                                f"shadow was judged against version {aliases['shadow_baseline']}")
        new["history"].append(_history_entry(ctx, "rollback", production=target,
                                             previous=new["previous"], rolled_back_from=prod,
                                             reason=reason, seq=new["seq"],
                                             shadow_cleared=cleared))
        out = {"production": {**_ref(cfg, home, target), **hashes},
               "previous": _entry(cfg, home, new["previous"]),
               "rolled_back_from": {**_ref(cfg, home, prod), **_hashes(base, aliases, prod)}
               if prod is not None else None,
               "reason": reason, "shadow_cleared": cleared}
        return _change(cfg, home, base, new, None, out, commit)


def rollback_step(cfg: PipelineConfig, home: Path, ctx: RunContext, reason: str = "",
                  to: int | None = None, execution: Any = None) -> dict[str, Any]:
    """Step `rollback` (runner.STEPS): :func:`rollback`, recorded in lineage before the aliases move.

    The restored version is recorded with the hash it was pushed with, so lineage links it to the
    very artifact its promotion wrote (``lineage model`` shows that promotion's whole chain).
    """
    def result_of(out: dict[str, Any]) -> dict[str, Any]:
        res = {**out, "rolled_back_from": (out["rolled_back_from"] or {}).get("version"),
               "inputs": [], "outputs": []}
        gone = out["rolled_back_from"]
        if gone:
            res["inputs"].append(artifact(ArtifactKind.MODEL_VERSION, gone["uri"], gone.get("sha256"),
                                          None, version=gone["version"], alias="production(before)"))
        now = out["production"]
        res["outputs"] = [
            artifact(ArtifactKind.MODEL_VERSION, now["uri"], now.get("sha256"), None,
                     version=now["version"], alias="production",
                     model_sha256=now.get("model_sha256")),
            artifact(ArtifactKind.REGISTRY_ALIASES, out["journal_uri"], out["journal_sha256"], None,
                     action="rollback", reason=reason)]
        return res

    holder: dict[str, Any] = {}

    def commit(out: dict[str, Any]) -> None:
        holder["result"] = result_of(out)
        execution.complete(holder["result"])

    out = rollback(cfg, home, ctx, reason=reason, to=to,
                   commit=commit if execution is not None else None)
    return holder.get("result") or result_of(out)


rollback_step.records_lineage = True  # type: ignore[attr-defined]  # runner passes `execution`


def _pending_shadow(cfg: PipelineConfig, aliases: dict[str, Any], expected_shadow: int,
                    expected_production: int | None) -> None:
    """Refuses a shadow decision that no longer applies (the aliases moved since it was made)."""
    if aliases["shadow"] != expected_shadow or aliases["production"] != expected_production:
        raise NotPromoted(
            f"registry {cfg.name}: the decision was about shadow version {expected_shadow} "
            f"against production {expected_production}, but the registry now has shadow "
            f"{aliases['shadow']} and production {aliases['production']}; nothing was changed "
            "(the next monitored span decides again)",
            {"shadow": aliases["shadow"], "production": aliases["production"]})


def promote_shadow(cfg: PipelineConfig, home: Path, ctx: RunContext, expected_shadow: int,
                   expected_production: int | None, decision: dict[str, Any],
                   commit: Commit | None = None) -> dict[str, Any]:
    """Makes the shadow production (``previous`` = the old production) and clears the shadow.

    The same prepare/record/apply path as :func:`push`: ``commit`` records the change (with the
    monitoring records it was decided on) before the aliases move; the shadow's folder is re-hashed
    against its push record first.

    Raises:
        NotPromoted: the shadow or production changed since the decision.
        RegistryError: the shadow's folder is missing or changed.
    """
    with locked(cfg, home) as base:
        _resolve(cfg, home, base)
        aliases = _load(cfg, base)
        _pending_shadow(cfg, aliases, expected_shadow, expected_production)
        hashes = _verified(cfg, base, aliases, expected_shadow)
        stack = [*aliases["stack"], expected_shadow]
        new = copy.deepcopy(aliases)
        new.update(production=expected_shadow, previous=stack[-2] if len(stack) > 1 else None,
                   stack=stack, shadow=None, shadow_since=None, shadow_baseline=None,
                   seq=aliases["seq"] + 1)
        new["history"].append(_history_entry(
            ctx, "shadow_promote", production=expected_shadow, previous=new["previous"],
            spans=decision.get("spans_judged"), seq=new["seq"]))
        out = {"production": {**_ref(cfg, home, expected_shadow), **hashes},
               "previous": _entry(cfg, home, new["previous"]), "decision": decision}
        return _change(cfg, home, base, new, None, out, commit)


def drop_shadow(cfg: PipelineConfig, home: Path, ctx: RunContext, expected_shadow: int,
                expected_production: int | None, reasons: list[str],
                commit: Commit | None = None, spans: list[str] | None = None) -> dict[str, Any]:
    """Clears the shadow alias with its reasons; the version stays registered (unaliased).

    Raises:
        NotPromoted: the shadow or production changed since the decision.
    """
    with locked(cfg, home) as base:
        _resolve(cfg, home, base)
        aliases = _load(cfg, base)
        _pending_shadow(cfg, aliases, expected_shadow, expected_production)
        new = copy.deepcopy(aliases)
        new.update(shadow=None, shadow_since=None, shadow_baseline=None, seq=aliases["seq"] + 1)
        new["history"].append(_history_entry(ctx, "shadow_drop", shadow=expected_shadow,
                                             production=expected_production, reasons=reasons,
                                             spans=spans, seq=new["seq"]))
        out = {"dropped": {**_ref(cfg, home, expected_shadow),
                           **_hashes(base, aliases, expected_shadow)}, "reasons": reasons}
        return _change(cfg, home, base, new, None, out, commit)


SHADOW_ACTIONS = ("shadow", "shadow_promote", "shadow_drop")


def shadow_history(cfg: PipelineConfig, home: Path) -> dict[str, Any]:
    """The pending shadow and every shadow event of the history (set, promoted, dropped, cleared
    by a production change), oldest first: what ``registry list`` and the dashboard show."""
    aliases = read_aliases(cfg, home)
    events = [h for h in aliases["history"]
              if h.get("action") in SHADOW_ACTIONS or h.get("shadow_cleared")]
    pending = None
    if aliases["shadow"] is not None:
        pending = {"version": aliases["shadow"], "since": aliases["shadow_since"],
                   "baseline": aliases["shadow_baseline"]}
    return {"pending": pending, "events": events}


def describe_shadow_event(h: dict[str, Any]) -> str:
    """One line of a shadow event of the history."""
    if h["action"] == "shadow":
        text = f"shadow set to version {h['shadow']} (production {h['production']})"
        if h.get("replaced_shadow") is not None:
            text += f", replacing the undecided version {h['replaced_shadow']}"
    elif h["action"] == "shadow_promote":
        text = (f"shadow version {h['production']} PROMOTED to production (previous "
                f"{h['previous']}) on spans {', '.join(h.get('spans') or [])}")
    elif h["action"] == "shadow_drop":
        text = (f"shadow version {h['shadow']} DROPPED on spans {', '.join(h.get('spans') or [])}: "
                + "; ".join(h.get("reasons") or []))
    else:
        c = h["shadow_cleared"]
        text = f"shadow version {c['version']} cleared by a {h['action']}: {c['why']}"
    return f"{h['at']}  {text}"


def write_serving_config(cfg: PipelineConfig, home: Path) -> Path:
    """Regenerates TF Serving's model config from the current aliases, under the registry lock."""
    with locked(cfg, home) as base:
        return serving_config.write_for(base, read_aliases(cfg, home))


def repair(cfg: PipelineConfig, home: Path) -> dict[str, Any]:
    """Rebuilds a missing or damaged aliases.json from the newest history entry.

    Raises:
        RegistryError: there is no history entry to rebuild from.
    """
    with locked(cfg, home) as base:
        path = base / ALIASES_FILE
        _resolve(cfg, home, base)  # a pending change: completed (recorded) or undone first
        entries = sorted((base / HISTORY_DIR).glob("[0-9]*.json"))
        for entry in reversed(entries):
            try:
                doc = _normalise(cfg, read_json(entry), entry)
            except (OSError, ValueError, RegistryError):
                continue
            if any(not (base / str(v)).is_dir() for v in [doc["production"]] if v is not None):
                continue
            _write_durable(path, entry.read_bytes())
            serving_config.write_for(base, doc)  # issue 12: TF Serving follows the aliases
            return {"repaired": str(path), "from": str(entry), "production": doc["production"],
                    "versions": doc["versions"]}
        raise RegistryError(f"registry {cfg.name}: no usable entry under {base / HISTORY_DIR} to "
                            f"rebuild {path} from; restore it from a backup")
