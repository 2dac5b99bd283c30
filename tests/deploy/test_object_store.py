"""An object-store home for real: ``PIPELINES_HOME=s3://...`` on moto's S3 server on loopback.

"Machine A" (its own mirror folder) ingests one Adult span whose landing files a producer uploaded
to the bucket, validates and transforms it (the CLI, real Beam and TFT), and pushes the session's
trained model into the registry twice (the function promote calls: version folder, history,
aliases.json under the bucket's lock). "Machine B" (an empty mirror) then ingests and transforms the
same span and must reuse what A published, and reads A's registry. Every artifact lineage recorded
is re-hashed from the bucket's objects (not from the mirror). A publish that fails mid-upload
leaves no manifest. The server is stopped at the end. (The full ``pipelines run`` on an s3:// home
passed too, in 9 min at load 25: too long for the suite's budget; train, evaluate and promote add
nothing object-store specific beyond what runs here.)
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
def runs(s3, tmp_path_factory, trained):
    from pipelines import objstore, registry, store
    from pipelines.context import RunContext
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
    span = ["--span", END_DATE.isoformat(), "--window", "1", "--json"]
    out = {}
    for machine, env in (("a", env_a), ("b", env_b)):
        for step, args in (("ingest", span), ("validate", ["--json"]), ("transform", ["--json"])):
            proc = _pipelines([step, "configs/adult.yaml", *args], env,
                              root / f"{step}-{machine}.log")
            assert proc.returncode == 0, (root / f"{step}-{machine}.log").read_text()[-4000:]
            out[f"{step}_{machine}"] = json.loads(proc.stdout)
        if machine == "a":  # the registry: what promote does, on the model the session trained
            saved = {k: os.environ.get(k) for k in ("PIPELINES_HOME", objstore.CACHE_ENV)}
            os.environ.update(PIPELINES_HOME=HOME, **{objstore.CACHE_ENV: str(root / "a")})
            try:
                home = store.resolve_home(HOME)
                ctx = RunContext(run_id="objstore-e2e", triggered_by="test")
                for expected in (None, 1):
                    out.setdefault("pushed", []).append(registry.push(
                        cfg, home, ctx, trained["model_uri"], expected, {"by": "test"}))
            finally:
                for k, v in saved.items():
                    os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    registry_b = _pipelines(["registry", "list", "configs/adult.yaml", "--json"], env_b,
                            root / "registry-b.log")
    assert registry_b.returncode == 0, registry_b.stderr[-3000:]
    out.update(root=root, registry_b=json.loads(registry_b.stdout),
               mirror_a=root / "a" / "s3" / BUCKET / PREFIX,
               mirror_b=root / "b" / "s3" / BUCKET / PREFIX)
    return out


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
    """Snapshot, validation and transform: each lineage record's sha256 equals the hash of the
    objects in the bucket (a file's bytes, or a folder's tree hash)."""
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
        if owner is None:  # a loose file: a landing file or a registry history entry
            assert rel.startswith(("landing/", "registry/")), f"{kind} {uri} was never published"
            if (mirror / rel).is_file():
                got = hashlib.sha256(_get(client, f"{PREFIX}/{rel}")).hexdigest()
                assert got == sha, f"{kind} {uri}: lineage recorded {sha}, the bucket holds {got}"
            continue
        inner = rel.removeprefix(owner).lstrip("/")
        if (mirror / rel).is_file():
            got = hashlib.sha256(_get(client, f"{PREFIX}/{rel}")).hexdigest()
        else:
            got = _remote_tree_sha(client, manifests[owner], inner)
        assert got == sha, f"{kind} {uri}: lineage recorded {sha}, the bucket holds {got}"
        checked[owner.split("/")[0]] = checked.get(owner.split("/")[0], 0) + 1
    for kind in ("snapshots", "transforms"):
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


def test_the_registry_in_the_bucket(s3, runs):
    """Version 1 and 2 with the hashes aliases.json records; production 2, previous 1; the lock
    released; machine B's registry list (an empty mirror) shows the same."""
    client = s3["client"]
    assert [p["version"] for p in runs["pushed"]] == [1, 2]
    aliases = json.loads(_get(client, f"{PREFIX}/registry/adult/aliases.json"))
    assert (aliases["production"], aliases["previous"]) == (2, 1)
    for v in (1, 2):
        manifest = json.loads(_get(client, f"{PREFIX}/.published/registry/adult/{v}.json"))
        assert _remote_tree_sha(client, manifest, "") == aliases["hashes"][str(v)]["sha256"]
        history = f"{PREFIX}/registry/adult/history/{v:06d}.json"
        assert json.loads(_get(client, history))["production"] == v
    assert not _keys(client, f"{PREFIX}/.locks/"), "the registry lock was not released"
    listed = runs["registry_b"]["versions"]
    assert [v["version"] for v in listed if "production" in v["aliases"]] == [2]


def test_a_second_machine_reuses_what_the_first_published(s3, runs):
    mirror_a, mirror_b = runs["mirror_a"], runs["mirror_b"]
    a, b = runs["ingest_a"], runs["ingest_b"]
    assert not a["reused"] and b["reused"]
    assert Path(b["uri"]).relative_to(mirror_b) == Path(a["uri"]).relative_to(mirror_a)
    assert b["sha256"] == a["sha256"]
    assert not runs["transform_a"].get("reused") and runs["transform_b"]["reused"] is True
    assert runs["transform_b"]["sha256"] == runs["transform_a"]["sha256"]


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
