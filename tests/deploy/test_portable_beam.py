"""The portable Beam path for real: a Beam job server and an external SDK worker pool on loopback.

The test starts Beam's Python job server (``local_job_service_main``) and a worker pool
(``worker_pool_main``), as a Flink or Spark deployment would run them beside the cluster, and
submits ingest and transform with ``--runner=PortableRunner --environment_type=EXTERNAL``. Every
element is processed by SDK workers the pool spawns, not in the test process. The outputs must be
identical to the in-process runner's (the session's ``snapshot`` and ``transformed`` fixtures):
same snapshot id, rows and records per split, byte-identical transformed data files.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipelines.config import REPO_ROOT, Beam
from tests.conftest import END_DATE, RAW_DIR
from tests.deploy.procs import kill_marked, marked, new_mark

pytestmark = [pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode}: {log.read_text()[-2000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on {port} after {timeout:.0f}s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def beam_services(tmp_path_factory):
    """(job endpoint, worker pool address, marker) of the services started here."""
    logs = tmp_path_factory.mktemp("portable-beam")
    job_port, pool_port, mark = _free_port(), _free_port(), new_mark()
    # the pool starts SDK workers as `python -c ...`: the virtualenv's python must come first
    env = {**os.environ, "PIPELINES_TEST_MARK": mark,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmds = {
        "job-server": [sys.executable, "-m",
                       "apache_beam.runners.portability.local_job_service_main",
                       "--port", str(job_port), "--staging_dir", str(logs / "staging")],
        "worker-pool": [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                        "--service_port", str(pool_port)],
    }
    procs = {}
    try:
        for name, cmd in cmds.items():
            with open(logs / f"{name}.log", "w") as log:
                procs[name] = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(job_port, procs["job-server"], logs / "job-server.log")
        _wait_port(pool_port, procs["worker-pool"], logs / "worker-pool.log")
        yield {"job": f"localhost:{job_port}", "pool": f"localhost:{pool_port}", "mark": mark,
               "logs": logs, "procs": procs}
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        kill_marked(mark)  # SDK workers the pool spawned, should any outlive it


@pytest.fixture(scope="module")
def portable(adult_cfg, beam_services, tmp_path_factory, ctx):
    """Ingest, validate and transform of the same 7-span window on the portable runner."""
    from pipelines.ingest import ingest
    from pipelines.sample_data import stage_sample_data
    from pipelines.transform import transform
    from pipelines.validate import validate

    home = tmp_path_factory.mktemp("portable-home")
    stage_sample_data(adult_cfg, home, END_DATE, days=7, from_dir=RAW_DIR)
    cfg = adult_cfg.model_copy(update={"beam": Beam(runner="PortableRunner", options=[
        f"--job_endpoint={beam_services['job']}", "--environment_type=EXTERNAL",
        f"--environment_config={beam_services['pool']}"])})
    seen: set[str] = set()
    done = threading.Event()

    broken: list[str] = []
    pool_log = beam_services["logs"] / "worker-pool.log"

    def watch() -> None:  # the SDK worker processes the pool spawns while the jobs run
        while not done.wait(0.5):
            seen.update(c for c in marked(beam_services["mark"]).values() if "SdkHarness" in c)
            if not broken and "Traceback" in pool_log.read_text(errors="replace"):
                # an SDK worker died at start: the job would wait for it forever; stopping the
                # job server fails the submission at once, with the reason below
                broken.append(pool_log.read_text(errors="replace")[-3000:])
                os.killpg(beam_services["procs"]["job-server"].pid, signal.SIGKILL)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    try:
        snap = ingest(cfg, home, ctx, span=END_DATE, window=7)
        validate(cfg, home, ctx, snapshot_uri=snap["uri"])
        xf = transform(cfg, home, ctx, snapshot_uris=[snap["uri"]])
    except Exception as exc:
        if broken:
            raise AssertionError(f"an SDK worker of the pool failed:\n{broken[0]}") from exc
        raise
    finally:
        done.set()
        watcher.join()
    return {"snapshot": snap, "transformed": xf, "seconds": time.perf_counter() - started,
            "sdk_workers_seen": seen}


def _outputs(result: dict, kind: str) -> dict:
    return {o.get("properties", {}).get("split", kind): o for o in result["outputs"]
            if o["kind"] == kind}


def _records(snapshot_uri: str, split: str) -> list[str]:
    """sha256 of every example of a split in canonical form (features sorted by name), sorted:
    the data, whatever the runner's sharding and record order. A tf.Example's features are a
    protobuf map, serialized in an order that varies between processes, so raw record bytes of
    two runs differ even for equal examples."""
    from tensorflow.core.example import example_pb2

    digests = []
    for shard in sorted(Path(snapshot_uri, split).glob("data-*.tfrecord")):
        blob, at = shard.read_bytes(), 0
        while at < len(blob):  # TFRecord framing: length (8), crc (4), data, crc (4)
            (n,) = struct.unpack_from("<Q", blob, at)
            example = example_pb2.Example.FromString(blob[at + 12:at + 12 + n])
            digests.append(hashlib.sha256(example.SerializeToString(deterministic=True))
                           .hexdigest())
            at += 16 + n
    return sorted(digests)


def test_ingest_on_the_job_server_matches_in_process(portable, snapshot):
    """Same snapshot id, rows and examples per split. The folder's content hash is not compared:
    the number of shards, the record order and each record's feature order are not stable across
    runners or processes (the transform writes canonical sorted records, so its data files are
    byte-identical: next test)."""
    got = portable["snapshot"]
    assert got["snapshot_id"] == snapshot["snapshot_id"]
    assert got["rows"] == snapshot["rows"] and got["malformed_rows"] == snapshot["malformed_rows"]
    for split in ("train", "eval"):
        mine, ref = _records(got["uri"], split), _records(snapshot["uri"], split)
        assert len(mine) == got["rows"][split] and mine == ref, split
    prov = json.loads(Path(got["provenance_uri"]).read_text())
    assert prov["beam"]["runner"] == "PortableRunner"  # really ran there, as recorded


def test_transform_on_the_job_server_matches_in_process(portable, transformed):
    got = portable["transformed"]
    assert got["rows"] == transformed["rows"]
    mine = {s: o["sha256"] for s, o in _outputs(got, "TransformedExamples").items()}
    ref = {s: o["sha256"] for s, o in _outputs(transformed, "TransformedExamples").items()}
    assert mine == ref and set(mine) == {"train", "eval"}


def test_the_work_ran_in_the_external_worker_pool(portable):
    """The pool spawned SDK worker processes (the in-process runner starts none)."""
    assert portable["sdk_workers_seen"], "no SDK worker process was seen while the jobs ran"
