"""The object-store home's own logic: URI parsing, the publish order, pulls, the registry push.

The bucket here is an in-memory stand-in for our own :class:`pipelines.objstore.Bucket` wrapper
(its conditional writes behave like S3's); tests/deploy/test_object_store.py runs the same code
against a real S3 server.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipelines import objstore, store


class MemoryBucket:
    """Objects in a dict; every write appended to ``log`` in order."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.log: list[str] = []
        self.n = 0

    def _etag(self, data: bytes) -> str:
        return f'"{hashlib.md5(data).hexdigest()}"'

    def objects(self, prefix):
        for k in sorted(self.data):
            if k.startswith(prefix):
                yield {"Key": k, "Size": len(self.data[k]), "ETag": self._etag(self.data[k])}

    def get(self, key):
        return (self.data[key], self._etag(self.data[key])) if key in self.data else None

    def put(self, key, data, *, if_none_match=False, if_match=None):
        if if_none_match and key in self.data:
            raise objstore.Conflict(f"{key} exists")
        if if_match and (key not in self.data or self._etag(self.data[key]) != if_match):
            raise objstore.Conflict(f"{key} changed")
        self.data[key] = data
        self.log.append(key)
        return self._etag(data)

    def upload(self, key, path):
        self.put(key, Path(path).read_bytes())

    def download(self, key, path):
        Path(path).write_bytes(self.data[key])

    def delete(self, keys):
        for k in keys:
            self.data.pop(k, None)
            self.log.append("-" + k)


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """``s3://bkt/pre`` backed by a MemoryBucket; mirrors under tmp_path/cache."""
    monkeypatch.setenv(objstore.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(objstore.FAULT_ENV, raising=False)
    bucket = MemoryBucket()
    real_open = objstore.open_mirror

    def open_mirror(uri, folder=None):
        m = real_open(uri, folder)
        m.bucket = bucket  # type: ignore[assignment]
        return m

    monkeypatch.setattr(objstore, "open_mirror", open_mirror)
    monkeypatch.setattr(objstore, "_MIRRORS", {})
    return bucket


def new_machine(monkeypatch, tmp_path, name):
    monkeypatch.setenv(objstore.CACHE_ENV, str(tmp_path / name))
    monkeypatch.setattr(objstore, "_MIRRORS", {})
    return store.resolve_home("s3://bkt/pre")


# --- parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("uri,bucket,prefix", [
    ("s3://bkt/pre", "bkt", "pre"), ("s3://bkt", "bkt", ""), ("s3://my.bucket-1/a/b/", "my.bucket-1",
                                                               "a/b"), ("s3://bkt//a//b", "bkt", "a/b")])
def test_parse(uri, bucket, prefix):
    loc = objstore.parse(uri)
    assert (loc.bucket, loc.prefix) == (bucket, prefix)
    assert loc.key("snapshots", "x/") == "/".join(p for p in (prefix, "snapshots", "x") if p)


@pytest.mark.parametrize("uri,message", [
    ("gs://bkt/x", "storage.googleapis.com"), ("ftp://h/x", "not supported"),
    ("s3://B/x", "not an S3 bucket name"), ("s3://ab/x", "not an S3 bucket name"),
    ("s3://bkt/../x", "hidden segment"), ("s3://bkt/a/.published", "hidden segment")])
def test_parse_refuses_with_a_hint(uri, message):
    with pytest.raises(objstore.ObjectStoreError, match=message.replace(".", r"\.")):
        objstore.parse(uri)


def test_is_uri_and_mirror_folder(tmp_path, monkeypatch):
    assert objstore.is_uri("s3://b/x") and not objstore.is_uri("/var/x") and not objstore.is_uri(
        Path("/x"))
    monkeypatch.setenv(objstore.CACHE_ENV, str(tmp_path))
    assert objstore.mirror_folder(objstore.parse("s3://bkt/a/b")) == tmp_path / "s3" / "bkt" / "a/b"


def test_a_uri_given_as_a_path_keeps_its_scheme(remote, tmp_path):
    home = store.resolve_home(Path("s3://bkt/pre"))  # typer's --home is a Path: s3:/bkt/pre
    assert home == tmp_path / "cache" / "s3" / "bkt" / "pre"
    assert (home / ".remote").read_text().strip() == "s3://bkt/pre"
    assert store.resolve_home(str(home)) == home  # a mirror path resolves to its mirror


def test_a_local_home_never_touches_an_object_store(tmp_path, monkeypatch):
    monkeypatch.setattr(objstore, "Bucket", None)  # any use would fail
    home = store.resolve_home(tmp_path / "home")
    assert objstore.mirror_of(home) is None
    with store.publish(store.path(home, store.Kind.MODEL, "p", "m")) as tmp:
        (tmp / "model.json").write_text("{}")
    store.write_text_atomic(store.report_path(home, "p", "r"), "<html>")
    assert store.newest(home, store.Kind.MODEL, "p") == home / "models" / "p" / "m"


# --- publish ---------------------------------------------------------------------------------

def _publish(home, files, kind=store.Kind.MODEL, name="m1"):
    final = store.path(home, kind, "p", name)
    with store.publish(final) as tmp:
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
    return final


def test_publish_uploads_files_then_the_marker_then_the_manifest(remote, tmp_path):
    home = store.resolve_home("s3://bkt/pre")
    final = _publish(home, {"model.json": b"{}", "a/z.bin": b"z", "b.bin": b"b"})
    assert remote.log == ["pre/models/p/m1/a/z.bin", "pre/models/p/m1/b.bin",
                          "pre/models/p/m1/model.json", "pre/.published/models/p/m1.json"]
    manifest = json.loads(remote.data["pre/.published/models/p/m1.json"])
    assert manifest["uri"] == "s3://bkt/pre/models/p/m1" and manifest["marker"] == "model.json"
    assert {e["path"]: e["sha256"] for e in manifest["files"]}["b.bin"] == hashlib.sha256(
        b"b").hexdigest()
    assert (final / "a" / "z.bin").read_bytes() == b"z"


def test_a_failed_upload_publishes_nothing(remote, tmp_path, monkeypatch):
    home = store.resolve_home("s3://bkt/pre")
    monkeypatch.setenv(objstore.FAULT_ENV, "2")
    with pytest.raises(objstore.ObjectStoreError, match="simulated failure after 2 files"):
        _publish(home, {"model.json": b"{}", "a.bin": b"a", "b.bin": b"b"})
    assert not any(k.startswith("pre/.published/") for k in remote.data)
    assert "pre/models/p/m1/model.json" not in remote.data  # the marker goes last
    assert not (home / "models" / "p" / "m1").exists()
    other = new_machine(monkeypatch, tmp_path, "other")
    assert store.newest(other, store.Kind.MODEL, "p") is None
    monkeypatch.delenv(objstore.FAULT_ENV)
    _publish(home, {"model.json": b"{}", "a.bin": b"a", "b.bin": b"b"})  # the retry completes it
    assert "pre/.published/models/p/m1.json" in remote.data


def test_the_second_writer_of_an_artifact_keeps_the_first(remote, tmp_path, monkeypatch):
    home_a = store.resolve_home("s3://bkt/pre")
    _publish(home_a, {"model.json": b'{"by": "a"}'})
    home_b = new_machine(monkeypatch, tmp_path, "b")
    (home_b / "models" / "p" / "m1").rename(home_b / "models" / "p" / ".gone")  # B missed it
    _publish(home_b, {"model.json": b'{"by": "b"}'})
    assert (home_b / "models" / "p" / "m1" / "model.json").read_bytes() == b'{"by": "a"}'
    assert remote.data["pre/models/p/m1/model.json"] == b'{"by": "a"}'


def test_another_machine_pulls_complete_artifacts_in_their_order(remote, tmp_path, monkeypatch):
    home = store.resolve_home("s3://bkt/pre")
    _publish(home, {"model.json": b"1", "w": b"x" * 100}, name="old")
    _publish(home, {"model.json": b"2"}, name="new")
    marker = home / "models" / "p" / "old" / "model.json"
    os.utime(marker, ns=(1, 1))  # any order: what counts is the publisher's mtime, kept on pull
    other = new_machine(monkeypatch, tmp_path, "other")
    assert store.newest(other, store.Kind.MODEL, "p") == other / "models" / "p" / "new"
    assert (other / "models" / "p" / "old" / "w").read_bytes() == b"x" * 100
    writes = len(remote.log)
    store.resolve_home("s3://bkt/pre")  # nothing new: no download, no write
    assert len(remote.log) == writes


def test_a_pull_refuses_an_object_changed_after_publishing(remote, tmp_path, monkeypatch):
    home = store.resolve_home("s3://bkt/pre")
    _publish(home, {"model.json": b"{}", "w": b"good"})
    remote.data["pre/models/p/m1/w"] = b"evil"
    with pytest.raises(objstore.ObjectStoreError, match="does not match its manifest"):
        new_machine(monkeypatch, tmp_path, "other")
    assert not (tmp_path / "other" / "s3" / "bkt" / "pre" / "models" / "p" / "m1").exists()


# --- loose files: reports, landing, the registry ---------------------------------------------

def test_reports_are_uploaded_and_landing_files_pulled(remote, tmp_path, monkeypatch):
    home = store.resolve_home("s3://bkt/pre")
    store.write_text_atomic(store.report_path(home, "p", "r1"), "<html>")
    assert remote.data["pre/reports/p/r1.html"] == b"<html>"
    remote.data["pre/landing/p/2026-11-20/a.csv"] = b"x,y\n"
    assert store.resolve_landing(home) == home / "landing"
    assert (home / "landing" / "p" / "2026-11-20" / "a.csv").read_bytes() == b"x,y\n"
    monkeypatch.setenv(store.LANDING_ENV, str(tmp_path / "local-landing"))
    assert store.resolve_landing(home) == tmp_path / "local-landing"


def test_a_registry_change_is_pushed_with_the_commit_file_last(remote, tmp_path, monkeypatch):
    home = store.resolve_home("s3://bkt/pre")
    base = store.root(home, store.Kind.REGISTRY, "p")
    base.mkdir(parents=True)
    with store.synced(base):
        assert "pre/.locks/registry/p.json" in remote.data
        with store.publish(base / "1") as tmp:
            (tmp / "registry.json").write_text("{}")
            (tmp / "saved_model.pb").write_bytes(b"pb")
        (base / "history").mkdir()
        (base / "history" / "000001.json").write_text("{}")
        (base / ".intent.json").write_text("{}")
        (base / ".lock").write_text("")
        (base / "aliases.json").write_text('{"production": 1}')
    assert "pre/.locks/registry/p.json" not in remote.data
    loose = [k for k in remote.log if "/1/" not in k and ".published" not in k and ".locks" not in k]
    assert loose == ["pre/registry/p/.intent.json", "pre/registry/p/history/000001.json",
                     "pre/registry/p/aliases.json"]
    assert "pre/registry/p/.lock" not in remote.data
    # The next change removes the intent and sets version 1 aside: both go from the bucket too.
    with store.synced(base):
        (base / ".intent.json").unlink()
        (base / "1").rename(base / ".orphaned-1")
    assert "pre/registry/p/.intent.json" not in remote.data
    assert not any(k.startswith(("pre/registry/p/1/", "pre/.published/registry/p/1"))
                   for k in remote.data)
    other = new_machine(monkeypatch, tmp_path, "other")
    assert json.loads((other / "registry" / "p" / "aliases.json").read_text()) == {"production": 1}
    assert not (other / "registry" / "p" / "1").exists()


def test_the_registry_lock_waits_and_breaks_a_dead_holders_lock(remote, tmp_path, monkeypatch):
    home = store.resolve_home("s3://bkt/pre")
    base = store.root(home, store.Kind.REGISTRY, "p")
    base.mkdir(parents=True)
    remote.data["pre/.locks/registry/p.json"] = json.dumps(
        {"owner": "x@dead:1", "since": 0, "id": "old"}).encode()
    with store.synced(base):  # since 1970: stale, broken
        pass
    remote.data["pre/.locks/registry/p.json"] = json.dumps(
        {"owner": "x@alive:1", "since": 4e9, "id": "live"}).encode()
    monkeypatch.setattr(objstore, "LOCK_WAIT_SECONDS", 0.2)
    with pytest.raises(objstore.ObjectStoreError, match="locked by x@alive:1"), store.synced(base):
        pass
