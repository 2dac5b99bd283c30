"""An object-store home (``PIPELINES_HOME=s3://bucket/prefix``): a local mirror kept in step with S3.

Why a mirror and not ``s3://`` paths everywhere: TensorFlow 2.21 has no ``s3://`` file system of
its own (it moved to tensorflow-io, whose last wheel, 0.37.1, is built for TF 2.16/2.17), TFT and
TFMA write through TF's file systems, and the steps, the registry and lineage hash and list
artifacts as local folders. So every step works on a local folder, and the object store is the
shared copy every machine agrees on:

- :func:`pipelines.store.resolve_home` maps ``s3://bucket/prefix`` to a local mirror folder
  (``PIPELINES_CACHE``, default ``~/.cache/pipelines/s3/<bucket>/<prefix>``; a ``.remote`` file in
  it names the URI, so a path handed to another process still finds its bucket) and pulls every
  artifact published since (:meth:`Mirror.pull`: one LIST, then only what is new).
- :func:`pipelines.store.publish` uploads a finished artifact before it is renamed into place
  locally (:meth:`Mirror.push_folder`): every file, the artifact's own marker file last, then its
  *manifest* ``.published/<kind>/<pipeline>/<id>.json`` (each file's size, sha256 and mtime),
  written with ``If-None-Match: *``. The manifest is the completion marker: an object store has no
  rename, so a reader pulls only folders that have one, and a failed upload (process killed, server
  gone) leaves objects without a manifest, which no reader sees and the next publish overwrites.
  Pulls verify every file's sha256 and restore its mtime (``newest`` compares marker mtimes).
- The registry (versions, ``history/``, ``aliases.json``, ``models.config``) is changed under a
  lock object in the bucket (:meth:`Mirror.synced`: ``If-None-Match`` create, stale after
  :data:`LOCK_STALE_SECONDS`) around the registry's own local lock: pull the registry, change it
  locally, push the changed files with ``aliases.json`` last (``If-Match`` its last known ETag, so
  a writer that lost its lock cannot overwrite a newer one).
- The landing area ``<home>/landing`` is pulled from ``s3://bucket/prefix/landing/`` when ingest asks
  for it (files whose ETag changed): producers drop span files into the bucket; a
  ``PIPELINES_LANDING`` override is a local folder read as it is.
- Reports are uploaded as they are written. The lineage database, OpenLineage events and the
  locks of local writers stay in the mirror (use ``PIPELINES_LINEAGE_URL`` for a lineage store
  shared by machines); lineage records mirror paths, the same on every machine with the same
  ``PIPELINES_CACHE``.

S3 only: the client is boto3 (``AWS_ENDPOINT_URL_S3`` points it at an S3-compatible server: MinIO,
Ceph, GCS's XML API with HMAC keys, moto in the tests). Limits: every machine pulls every published
artifact (immutable, so each once; delete the mirror to drop old ones); two machines computing the
same content-addressed artifact at once may interleave its files (the manifest's sha256s then
refuse the pull rather than hand out a mix).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError

SCHEMES = ("s3://",)
CACHE_ENV = "PIPELINES_CACHE"
REMOTE_FILE = ".remote"
PUBLISHED = ".published"  # manifests: the completion markers of the object store
LOCKS = ".locks"
ETAGS_FILE = ".etags.json"  # local: the ETag of each loose file as last pulled or pushed
LOCK_STALE_SECONDS = 15 * 60
LOCK_WAIT_SECONDS = 10 * 60
# Test hook: raise in the middle of an upload, after this many files (publish-ordering tests).
FAULT_ENV = "PIPELINES_OBJSTORE_FAULT_AFTER_FILES"
# Loose (non-artifact) files of a mirrored tree that are pushed although their name starts with a dot.
PUSHED_HIDDEN = (".intent.json",)
COMMIT_FILE = "aliases.json"  # pushed last by :meth:`Mirror.synced`
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ObjectStoreError(PipelineError):
    """The object store cannot be reached, refused a request, or holds something inconsistent."""


class Conflict(ObjectStoreError):
    """A conditional write lost: another writer created or changed the object first."""


@dataclass(frozen=True)
class Location:
    """``s3://bucket/prefix``, parsed: the bucket and the key prefix (no slashes at either end)."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))


def is_uri(value: object) -> bool:
    """True when ``value`` names an object store (``scheme://``) rather than a local path."""
    return isinstance(value, str) and "://" in value


def parse(uri: str) -> Location:
    """Parses ``s3://bucket[/prefix]``; a clear error for other schemes and malformed names."""
    if not uri.startswith(SCHEMES):
        scheme = uri.split("://", 1)[0]
        hint = (" For Google Cloud Storage use its S3-compatible API: PIPELINES_HOME=s3://<bucket>, "
                "AWS_ENDPOINT_URL_S3=https://storage.googleapis.com and an HMAC key as "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY." if scheme == "gs" else "")
        raise ObjectStoreError(f"PIPELINES_HOME={uri}: the {scheme}:// scheme is not supported; "
                               f"use s3://<bucket>/<prefix> or a local folder.{hint}")
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ObjectStoreError(f"PIPELINES_HOME={uri}: {bucket!r} is not an S3 bucket name (3-63 "
                               "lowercase letters, digits, dots and hyphens)")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") or p.startswith(".") for p in parts) or "\\" in prefix:
        raise ObjectStoreError(f"PIPELINES_HOME={uri}: the prefix {prefix!r} has a '.', '..' or "
                               "hidden segment; name a plain folder such as s3://bucket/pipelines")
    return Location(bucket, "/".join(parts))


def mirror_folder(loc: Location) -> Path:
    """The local mirror of ``loc``: ``PIPELINES_CACHE`` or ``~/.cache/pipelines``, then
    ``s3/<bucket>/<prefix>`` (the same path on every machine with the same cache setting)."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pipelines").expanduser()
    return (base / "s3" / loc.bucket / loc.prefix).resolve()


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    from pipelines.hashing import sha256_file

    return sha256_file(path)


class Bucket:
    """The few S3 calls the mirror needs (boto3), with errors that say what to fix."""

    def __init__(self, loc: Location, client: Any = None) -> None:
        self.loc = loc
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("s3", config=Config(retries={"max_attempts": 3}))
        return self._client

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                raise Conflict(f"{what}: another writer changed it first") from exc
            hint = {"NoSuchBucket": f"create the bucket {self.loc.bucket} first",
                    "AccessDenied": "give these credentials read/write access to the prefix",
                    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"}.get(
                code, "check the bucket, the credentials and AWS_ENDPOINT_URL_S3")
            raise ObjectStoreError(f"{what} on {self.loc.uri} failed ({code}: "
                                   f"{exc.response.get('Error', {}).get('Message', exc)}); {hint}"
                                   ) from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"{what} on {self.loc.uri} failed ({type(exc).__name__}: {exc});"
                                   " check AWS_ENDPOINT_URL_S3, the network and the credentials"
                                   ) from exc

    def objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` (a key prefix): dicts with Key, Size, ETag, LastModified."""
        with self._errors(f"listing {prefix}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.loc.bucket, Prefix=prefix)
            for page in pages:
                yield from page.get("Contents", [])

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when there is none."""
        from botocore.exceptions import ClientError

        try:
            with self._errors(f"reading {key}"):
                r = self.client.get_object(Bucket=self.loc.bucket, Key=key)
                return r["Body"].read(), r["ETag"]
        except ObjectStoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get(
                    "Code") in ("NoSuchKey", "404"):
                return None
            raise

    def put(self, key: str, data: bytes, *, if_none_match: bool = False,
            if_match: str | None = None) -> str:
        """Writes ``data``; conditional when asked (Conflict when the condition fails). ETag."""
        extra: dict[str, str] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match:
            extra["IfMatch"] = if_match
        with self._errors(f"writing {key}"):
            return self.client.put_object(Bucket=self.loc.bucket, Key=key, Body=data,
                                          **extra)["ETag"]

    def upload(self, key: str, path: Path) -> None:
        with self._errors(f"uploading {path} to {key}"), open(path, "rb") as fh:
            self.client.put_object(Bucket=self.loc.bucket, Key=key, Body=fh)

    def download(self, key: str, path: Path) -> None:
        with self._errors(f"downloading {key}"):
            self.client.download_file(self.loc.bucket, key, str(path))

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            with self._errors(f"deleting {len(keys)} objects"):
                self.client.delete_objects(Bucket=self.loc.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


class Mirror:
    """A local folder mirroring ``s3://bucket/prefix`` (see the module doc)."""

    def __init__(self, loc: Location, folder: Path, bucket: Bucket | None = None) -> None:
        self.loc, self.folder = loc, Path(folder)
        self.bucket = bucket or Bucket(loc)

    # --- where things are -----------------------------------------------------------------
    def rel(self, path: Path) -> str:
        """``path`` relative to the mirror, as an object key suffix."""
        return Path(path).resolve().relative_to(self.folder).as_posix()

    def manifest_key(self, rel: str) -> str:
        return self.loc.key(PUBLISHED, rel + ".json")

    def _local_manifest(self, rel: str) -> Path:
        return self.folder / PUBLISHED / (rel + ".json")

    # --- publishing one artifact folder ---------------------------------------------------
    def published(self, rel: str) -> dict[str, Any] | None:
        got = self.bucket.get(self.manifest_key(rel))
        return json.loads(got[0]) if got else None

    def push_folder(self, src: Path, final: Path, marker: str | None) -> dict[str, Any] | None:
        """Uploads the finished folder ``src`` as the artifact at ``final``: its files (``marker``
        last), then its manifest (created only if absent). Returns the manifest written, or None
        when another writer had published ``final`` already (then nothing of theirs changed)."""
        rel = self.rel(final)
        if self.published(rel) is not None:
            return None
        files = _files(src)
        rels = [p.relative_to(src).as_posix() for p in files]
        order = sorted(range(len(files)), key=lambda i: (rels[i] == marker, rels[i]))
        fault = os.environ.get(FAULT_ENV)
        entries = []
        for n, i in enumerate(order):
            if fault is not None and n == int(fault):
                raise ObjectStoreError(f"{FAULT_ENV}={fault}: simulated failure after {n} files "
                                       f"of {rel}")
            self.bucket.upload(self.loc.key(rel, rels[i]), files[i])
            st = files[i].stat()
            entries.append({"path": rels[i], "size": st.st_size, "sha256": _sha256(files[i]),
                            "mtime_ns": st.st_mtime_ns})
        manifest = {"uri": f"{self.loc.uri}/{rel}", "files": entries, "marker": marker,
                    "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "writer": f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"}
        try:
            self.bucket.put(self.manifest_key(rel), _dump(manifest), if_none_match=True)
        except Conflict:
            return None
        self._save_manifest(rel, manifest)
        return manifest

    def _save_manifest(self, rel: str, manifest: dict[str, Any]) -> None:
        target = self._local_manifest(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(_dump(manifest))
        os.replace(tmp, target)

    def pull_folder(self, rel: str, manifest: dict[str, Any]) -> Path:
        """Downloads a published artifact into place (a hidden temporary folder renamed when every
        file is down and verified); returns its local folder."""
        final = self.folder / rel
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".tmp-{final.name}-pull-{uuid.uuid4().hex[:8]}"
            try:
                for entry in manifest["files"]:
                    target = tmp / entry["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.bucket.download(self.loc.key(rel, entry["path"]), target)
                    if _sha256(target) != entry["sha256"]:
                        raise ObjectStoreError(
                            f"{self.loc.uri}/{rel}/{entry['path']} does not match its manifest "
                            f"(sha256); the artifact was overwritten after it was published. "
                            f"Delete {self.manifest_key(rel)} and re-run the step that makes it")
                    os.utime(target, ns=(entry["mtime_ns"], entry["mtime_ns"]))
                for entry in manifest["files"]:  # the marker's mtime is what `newest` compares
                    if entry["path"] == manifest.get("marker"):
                        os.utime(tmp / entry["path"], ns=(entry["mtime_ns"], entry["mtime_ns"]))
                try:
                    os.rename(tmp, final)
                except OSError:
                    if not final.exists():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self._save_manifest(rel, manifest)
        return final

    # --- pulling --------------------------------------------------------------------------
    def pull(self, under: str = "") -> list[str]:
        """Pulls every artifact published under ``under`` (a relative folder, '' for all) that the
        mirror does not hold yet; returns their relative paths."""
        base = self.loc.key(PUBLISHED, under) + "/"
        pulled = []
        for obj in self.bucket.objects(base):
            rel = obj["Key"][len(self.loc.key(PUBLISHED)) + 1:].removesuffix(".json")
            if not obj["Key"].endswith(".json") or self._local_manifest(rel).is_file():
                continue
            got = self.bucket.get(obj["Key"])
            if got is None:  # deleted meanwhile (a registry version set aside)
                continue
            self.pull_folder(rel, json.loads(got[0]))
            pulled.append(rel)
        return pulled

    def _etags(self) -> dict[str, str]:
        path = self.folder / ETAGS_FILE
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save_etags(self, etags: dict[str, str]) -> None:
        path = self.folder / ETAGS_FILE
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(etags, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _artifact_folders(self, under: str) -> set[str]:
        root = self.folder / PUBLISHED / under
        return {p.relative_to(self.folder / PUBLISHED).as_posix().removesuffix(".json")
                for p in root.rglob("*.json")} if root.is_dir() else set()

    def pull_loose(self, under: str, delete: bool = False) -> None:
        """Pulls the files under ``under`` that are not part of a published artifact (registry
        state, landing files) whose ETag changed. ``delete`` also removes local files gone from
        the store that are unchanged since they were last synced (only under the remote lock)."""
        etags, changed = self._etags(), False
        artifacts = self._artifact_folders(under)
        remote = set()
        for obj in self.bucket.objects(self.loc.key(under) + "/"):
            rel = obj["Key"][len(self.loc.key()) + 1 if self.loc.prefix else 0:]
            if any(rel == a or rel.startswith(a + "/") for a in artifacts):
                continue
            remote.add(rel)
            target = self.folder / rel
            if etags.get(rel) == obj["ETag"] and target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.pull")
            self.bucket.download(obj["Key"], tmp)
            os.replace(tmp, target)
            etags[rel], changed = obj["ETag"], True
        if delete:
            for rel in [r for r in etags if (r == under or r.startswith(under + "/"))
                        and r not in remote]:
                target = self.folder / rel
                if target.is_file() and f'"{_md5(target)}"' == etags[rel]:
                    target.unlink()
                del etags[rel]
                changed = True
        if changed:
            self._save_etags(etags)

    # --- loose files and the registry -----------------------------------------------------
    def push_file(self, path: Path, if_match: str | None = None, create: bool = False) -> None:
        """Uploads one loose file (a report, a landing file, registry state)."""
        rel = self.rel(path)
        etag = self.bucket.put(self.loc.key(rel), Path(path).read_bytes(), if_match=if_match,
                               if_none_match=create)
        etags = self._etags()
        etags[rel] = etag
        self._save_etags(etags)

    @contextlib.contextmanager
    def lock(self, rel: str) -> Iterator[None]:
        """A lock object ``.locks/<rel>.json`` created with If-None-Match; a lock older than
        :data:`LOCK_STALE_SECONDS` (its holder died) is broken. Waits up to
        :data:`LOCK_WAIT_SECONDS`."""
        key = self.loc.key(LOCKS, rel + ".json")
        me = {"owner": f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}",
              "since": time.time(), "id": uuid.uuid4().hex}
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                self.bucket.put(key, _dump(me), if_none_match=True)
                break
            except Conflict:
                got = self.bucket.get(key)
                holder = json.loads(got[0]) if got else None
                if holder and time.time() - float(holder.get("since", 0)) > LOCK_STALE_SECONDS:
                    self.bucket.delete([key])  # its holder is gone: break the lock
                    continue
                if time.monotonic() > deadline:
                    raise ObjectStoreError(
                        f"{self.loc.uri}/{rel} is locked by {holder and holder.get('owner')} "
                        f"since {holder and holder.get('since')}; if that writer is gone, delete "
                        f"s3://{self.loc.bucket}/{key}") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            got = self.bucket.get(key)
            if got and json.loads(got[0]).get("id") == me["id"]:
                self.bucket.delete([key])

    @contextlib.contextmanager
    def synced(self, folder: Path) -> Iterator[None]:
        """Holds the remote lock of ``folder`` (the registry of a pipeline), brings the mirror's
        copy up to date, and afterwards pushes what changed: artifacts set aside are unpublished,
        loose files uploaded with :data:`COMMIT_FILE` last (If-Match), deleted ones deleted."""
        rel = self.rel(folder)
        with self.lock(rel):
            self.pull(rel)
            self.pull_loose(rel, delete=True)
            try:
                yield
            finally:
                self._push_tree(rel)

    def _push_tree(self, rel: str) -> None:
        folder = self.folder / rel
        # Published artifacts whose local folder went (a version set aside): unpublish, manifest first.
        for art in sorted(self._artifact_folders(rel)):
            if not (self.folder / art).is_dir():
                keys = [o["Key"] for o in self.bucket.objects(self.loc.key(art) + "/")]
                self.bucket.delete([self.manifest_key(art)])
                self.bucket.delete(keys)
                self._local_manifest(art).unlink(missing_ok=True)
        artifacts = self._artifact_folders(rel)
        etags = self._etags()
        loose = []
        for p in _files(folder) if folder.is_dir() else []:
            r = p.relative_to(self.folder).as_posix()
            if any(r.startswith(a + "/") for a in artifacts):
                continue
            inner = p.relative_to(folder).as_posix()
            if _hidden(inner) and inner not in PUSHED_HIDDEN:
                continue
            if etags.get(r) != f'"{_md5(p)}"':
                loose.append(p)
        loose.sort(key=lambda p: (p.name == COMMIT_FILE, p.as_posix()))
        for p in loose:
            r = p.relative_to(self.folder).as_posix()
            if p.name == COMMIT_FILE:
                self.push_file(p, if_match=etags.get(r), create=r not in etags)
            else:
                self.push_file(p)
        etags = self._etags()
        gone = [r for r in etags if r.startswith(rel + "/") and not (self.folder / r).is_file()]
        if gone:
            self.bucket.delete([self.loc.key(r) for r in gone])
            for r in gone:
                del etags[r]
            self._save_etags(etags)


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


_MIRRORS: dict[Path, Mirror | None] = {}


def open_mirror(uri: str, folder: Path | None = None) -> Mirror:
    """The mirror of ``uri`` in ``folder`` (default :func:`mirror_folder`), created on first use,
    its ``.remote`` file naming the URI."""
    loc = parse(uri)
    folder = Path(folder) if folder is not None else mirror_folder(loc)
    folder.mkdir(parents=True, exist_ok=True)
    remote = folder / REMOTE_FILE
    if not remote.is_file() or remote.read_text().strip() != loc.uri:
        tmp = remote.with_name(f"{REMOTE_FILE}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(loc.uri + "\n")
        os.replace(tmp, remote)
    mirror = _MIRRORS.get(folder)
    if mirror is None or mirror.loc != loc:
        mirror = _MIRRORS[folder] = Mirror(loc, folder)
    return mirror


def mirror_of(path: str | os.PathLike) -> Mirror | None:
    """The mirror ``path`` lies in (the nearest parent with a ``.remote`` file), or None."""
    p = Path(path).resolve()
    for folder in (p, *p.parents):
        if folder in _MIRRORS:
            return _MIRRORS[folder]
        remote = folder / REMOTE_FILE
        if remote.is_file():
            return open_mirror(remote.read_text().strip(), folder)
    return None
