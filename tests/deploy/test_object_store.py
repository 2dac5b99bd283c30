"""An object-store home for real: ``PIPELINES_HOME=s3://...`` on moto's S3 server on loopback.

One ``pipelines run`` of Adult (one span) on "machine A" (its own mirror folder) whose landing
files were uploaded to the bucket; then "machine B" (an empty mirror) ingests and transforms the
same span and must reuse what A published, and reads the registry A wrote. Every artifact lineage
recorded is re-hashed from the bucket's objects (not from the mirror). A publish that fails
mid-upload leaves no manifest, and nothing a reader would pull. The server is stopped at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.config import REPO_ROOT, load_config
from pipelines.errors import EXIT_NOT_PROMOTED
from tests.conftest import END_DATE, RAW_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUCKET = "pipelines-objstore-test"
PREFIX = "team/home"
HOME = f"s3://{BUCKET}/{PREFIX}"
PIPELINES = str(Path(sys.executable).with_name("pipelines"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on a free loopback port, with the bucket; stopped at the end."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                   str(port)], stdout=out, stderr=subprocess.STDOUT)
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "moto server did not start: " + log.read_text()
                time.sleep(0.2)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield {"client": client, "env": env, "server": server}
    finally:
        for k, v in locals().get("saved", {}).items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _keys(client, prefix: str) -> dict[str, dict]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o for page in pages for o in page.get("Contents", [])}


def _get(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _pipelines(args: list[str], env: dict, log: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([PIPELINES, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return proc


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):
    from pipelines.sample_data import stage_sample_data

    root = tmp_path_factory.mktemp("objstore")
    cfg = load_config(REPO_ROOT / "configs" / "adult.yaml")
    staging = root / "producer"
    stage_sample_data(cfg, staging, END_DATE, days=1, from_dir=RAW_DIR, landing=staging / "landing")
    for f in sorted((staging / "landing").rglob("*")):  # a producer drops files into the bucket
        if f.is_file():
            rel = f.relative_to(staging / "landing").as_posix()
            s3["client"].upload_file(str(f), BUCKET, f"{PREFIX}/landing/{rel}")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINES_")}
    env_a = {**base, **s3["env"], "PIPELINES_HOME": HOME, "PIPELINES_CACHE": str(root / "a"),
             "TF_USE_LEGACY_KERAS": "1"}
    env_b = {**env_a, "PIPELINES_CACHE": str(root / "b")}
    span = END_DATE.isoformat()
    run_a = _pipelines(["run", "configs/adult.yaml", "--span", span, "--window", "1", "--json"],
                       env_a, root / "run-a.log")
    assert run_a.returncode in (0, EXIT_NOT_PROMOTED), (root / "run-a.log").read_text()[-4000:]
    ingest_b = _pipelines(["ingest", "configs/adult.yaml", "--span", span, "--window", "1",
                           "--json"], env_b, root / "ingest-b.log")
    transform_b = _pipelines(["transform", "configs/adult.yaml", "--json"], env_b,
                             root / "transform-b.log")
    registry_b = _pipelines(["registry", "list", "configs/adult.yaml", "--json"], env_b,
                            root / "registry-b.log")
    return {"root": root, "a": json.loads(run_a.stdout), "rc_a": run_a.returncode,
            "ingest_b": ingest_b, "transform_b": transform_b, "registry_b": registry_b,
            "mirror_a": root / "a" / "s3" / BUCKET / PREFIX,
            "mirror_b": root / "b" / "s3" / BUCKET / PREFIX}


def _remote_tree_sha(client, manifest: dict, rel_in: str) -> str:
    """sha256_tree (pipelines.hashing) of the part ``rel_in`` of a published folder, computed from
    the bucket's objects themselves."""
    art = manifest["uri"].removeprefix(f"s3://{BUCKET}/")
    h = hashlib.sha256()
    files = sorted(e["path"] for e in manifest["files"]
                   if not rel_in or e["path"].startswith(rel_in + "/"))
    assert files, f"nothing under {rel_in!r} in {manifest['uri']}"
    for path in files:
        h.update(path.removeprefix(rel_in + "/" if rel_in else "").encode() + b"\0")
        h.update(hashlib.sha256(_get(client, f"{art}/{path}")).hexdigest().encode() + b"\n")
    return h.hexdigest()


def test_every_recorded_artifact_is_in_the_bucket_with_its_hash(s3, runs):
    """Snapshots, transform, model, evaluation and registry version: each lineage record's sha256
    equals the hash of the objects in the bucket (a file's bytes, or a folder's tree hash)."""
    client, mirror = s3["client"], runs["mirror_a"]
    manifests = {k.removeprefix(f"{PREFIX}/.published/").removesuffix(".json"): json.loads(
        _get(client, k)) for k in _keys(client, f"{PREFIX}/.published/")}
    db = sqlite3.connect(mirror / "lineage.db")
    rows = db.execute("SELECT kind, uri, sha256 FROM artifacts WHERE sha256 IS NOT NULL").fetchall()
    checked: dict[str, int] = {}
    for kind, uri, sha in rows:
        try:
            rel = Path(uri).relative_to(mirror).as_posix()
        except ValueError:
            continue
        owner = next((m for m in manifests if rel == m or rel.startswith(m + "/")), None)
        if owner is None:  # a loose file: the registry's history entries
            assert rel.startswith("registry/"), f"{kind} {uri} was never published"
            got = hashlib.sha256(_get(client, f"{PREFIX}/{rel}")).hexdigest()
            assert got == sha, f"{kind} {uri}: lineage recorded {sha}, the bucket holds {got}"
            checked["registry history"] = checked.get("registry history", 0) + 1
            continue
        inner = rel.removeprefix(owner).lstrip("/")
        if (mirror / rel).is_file():
            got = hashlib.sha256(_get(client, f"{PREFIX}/{rel}")).hexdigest()
        else:
            got = _remote_tree_sha(client, manifests[owner], inner)
        assert got == sha, f"{kind} {uri}: lineage recorded {sha}, the bucket holds {got}"
        checked[owner.split("/")[0]] = checked.get(owner.split("/")[0], 0) + 1
    for kind in ("snapshots", "transforms", "models", "evaluations", "registry",
                 "registry history"):
        assert checked.get(kind), f"no {kind} artifact verified in the bucket: {checked}"


def test_markers_are_the_last_objects_written(s3, runs):
    """Within every published folder the kind's marker file is uploaded after every other file
    (and the manifest after all of them)."""
    client = s3["client"]
    objects = _keys(client, f"{PREFIX}/")
    for key in [k for k in objects if k.startswith(f"{PREFIX}/.published/")]:
        manifest = json.loads(_get(client, key))
        art = manifest["uri"].removeprefix(f"s3://{BUCKET}/")
        stamps = {e["path"]: objects[f"{art}/{e['path']}"]["LastModified"]
                  for e in manifest["files"]}
        if manifest.get("marker") in stamps:
            assert stamps[manifest["marker"]] == max(stamps.values()), art
        assert objects[key]["LastModified"] >= max(stamps.values()), art


def test_aliases_in_the_bucket_name_the_promoted_version(s3, runs):
    promoted = runs["a"]["promote"]
    assert runs["rc_a"] == 0 and promoted, runs["a"].get("not_promoted")
    aliases = json.loads(_get(s3["client"], f"{PREFIX}/registry/adult/aliases.json"))
    assert aliases["production"] == promoted["version"]
    assert str(promoted["version"]) in [k.rsplit("/", 1)[-1].removesuffix(".json") for k in
                                        _keys(s3["client"], f"{PREFIX}/.published/registry/adult/")]
    assert not _keys(s3["client"], f"{PREFIX}/.locks/"), "the registry lock was not released"
    # Machine B, with an empty mirror, reads the same registry from the bucket.
    assert runs["registry_b"].returncode == 0, runs["registry_b"].stderr[-2000:]
    listed = json.loads(runs["registry_b"].stdout)["versions"]
    assert [v["version"] for v in listed if "production" in v["aliases"]] == [promoted["version"]]


def test_a_second_machine_reuses_what_the_first_published(s3, runs):
    ing, tr = runs["ingest_b"], runs["transform_b"]
    assert ing.returncode == 0, ing.stderr[-3000:]
    assert tr.returncode == 0, tr.stderr[-3000:]
    ingest_b, transform_b = json.loads(ing.stdout), json.loads(tr.stdout)
    a = runs["a"]
    mirror_a, mirror_b = runs["mirror_a"], runs["mirror_b"]
    assert ingest_b["reused"] is True
    assert Path(ingest_b["uri"]).relative_to(mirror_b) == \
        Path(a["ingest"]["uri"]).relative_to(mirror_a)
    assert ingest_b["sha256"] == a["ingest"]["sha256"]
    assert transform_b["reused"] is True
    assert transform_b["sha256"] == a["transform"]["sha256"]


def test_a_failed_upload_leaves_no_manifest(s3, tmp_path, monkeypatch):
    """An upload that dies after one file: no manifest, no local artifact, nothing a reader pulls;
    the next publish completes it."""
    from pipelines import objstore, store

    prefix = f"scratch/{tmp_path.name}"  # a home of its own: nothing of the run to pull
    scratch = f"s3://{BUCKET}/{prefix}"
    monkeypatch.setenv(objstore.CACHE_ENV, str(tmp_path / "c"))
    home = store.resolve_home(scratch)
    final = store.path(home, store.Kind.MODEL, "faulty", "m1")
    monkeypatch.setenv(objstore.FAULT_ENV, "1")
    with pytest.raises(objstore.ObjectStoreError, match="simulated failure after 1 files"):
        with store.publish(final) as tmp:
            (tmp / "weights.bin").write_bytes(os.urandom(1000))
            (tmp / "model.json").write_text("{}")
    client = s3["client"]
    assert f"{prefix}/models/faulty/m1/model.json" not in _keys(client, f"{prefix}/models/faulty/")
    assert not _keys(client, f"{prefix}/.published/models/faulty/")
    assert not final.exists() and not list(final.parent.glob(".tmp-*"))
    monkeypatch.setenv(objstore.CACHE_ENV, str(tmp_path / "d"))
    assert store.newest(store.resolve_home(scratch), store.Kind.MODEL, "faulty") is None
    monkeypatch.delenv(objstore.FAULT_ENV)
    with store.publish(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
        (tmp / "model.json").write_text("{}")
    monkeypatch.setenv(objstore.CACHE_ENV, str(tmp_path / "e"))
    found = store.newest(store.resolve_home(scratch), store.Kind.MODEL, "faulty")
    assert found is not None and (found / "weights.bin").read_bytes() == b"w"


def test_aliases_write_refused_when_the_bucket_copy_changed(s3, tmp_path, monkeypatch):
    """The registry's commit file is pushed with If-Match: a writer whose view is stale loses."""
    from pipelines import objstore, store

    prefix = f"scratch/{tmp_path.name}"  # a home of its own: nothing of the run to pull
    scratch = f"s3://{BUCKET}/{prefix}"
    monkeypatch.setenv(objstore.CACHE_ENV, str(tmp_path / "c"))
    home = store.resolve_home(scratch)
    base = home / "registry" / "race"
    base.mkdir(parents=True)
    with store.synced(base):
        (base / "aliases.json").write_text('{"seq": 1}\n')
    s3["client"].put_object(Bucket=BUCKET, Key=f"{prefix}/registry/race/aliases.json",
                            Body=b'{"seq": 2}\n')  # another machine, behind our back
    mirror = objstore.mirror_of(home)
    assert mirror is not None
    etag = mirror._etags()["registry/race/aliases.json"]
    (base / "aliases.json").write_text('{"seq": 3}\n')
    with pytest.raises(objstore.Conflict):
        mirror.push_file(base / "aliases.json", if_match=etag)
    assert _get(s3["client"], f"{prefix}/registry/race/aliases.json") == b'{"seq": 2}\n'
