"""Reuse that costs nothing (issue 11 item 4): ingest does not re-read files it has hashed.

The stat cache (pipelines.hashing.StatCache) on real files, and ingest's reuse through the real
Beam ingest on a small landing area, with the file readers replaced by ones that fail: a reused
snapshot whose files are unchanged is found without reading a byte. Times are in
benchmarks/results/scale.md (the "again" rows), not asserted here.
"""

from __future__ import annotations

import os
import time

import pytest

from pipelines import csv_parse, hashing
from pipelines.hashing import StatCache, sha256_file, sha256_tree
from tests.data.test_ingest_tasks import CTX, SPAN, land, make_cfg


def age(path, seconds: float = 60) -> None:
    """Sets a file's times into the past: only files older than the racy window are cached."""
    past = time.time() - seconds
    os.utime(path, (past, past))
    time.sleep(0.01)


def written(path, data: bytes):
    path.write_bytes(data)
    return path


def test_an_unchanged_file_is_not_read_again(tmp_path):
    f = written(tmp_path / "a.csv", b"x,y\n1,2\n")
    time.sleep(StatCache.RACY_SECONDS + 0.1)  # ctime too must be older than the racy window
    cache = StatCache(tmp_path / "cache.json")
    assert cache.sha256_file(f) == sha256_file(f) and cache.misses == 1
    cache.save()
    again = StatCache(tmp_path / "cache.json")
    assert again.sha256_file(f) == sha256_file(f)
    assert (again.hits, again.misses) == (1, 0)


def test_any_change_of_size_mtime_or_ctime_hashes_again(tmp_path):
    f = written(tmp_path / "a.csv", b"x,y\n1,2\n")
    time.sleep(StatCache.RACY_SECONDS + 0.1)
    cache = StatCache(tmp_path / "cache.json")
    first = cache.sha256_file(f)
    st = os.stat(f)
    # same size, mtime put back: ctime still moves on a write, so the change is seen
    f.write_bytes(b"x,y\n1,3\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.lookup(f) is None
    assert cache.sha256_file(f) == sha256_file(f) != first
    written(f, b"x,y\n1,3\n9,9\n")  # size
    assert cache.lookup(f) is None


def test_a_file_hashed_within_the_racy_window_is_not_remembered(tmp_path):
    f = written(tmp_path / "a.csv", b"fresh\n")
    cache = StatCache(tmp_path / "cache.json")
    cache.sha256_file(f)
    assert cache.lookup(f) is None and not cache.entries


def test_a_broken_cache_file_is_an_empty_cache(tmp_path):
    (tmp_path / "cache.json").write_text("{not json")
    f = written(tmp_path / "a.csv", b"x\n")
    assert StatCache(tmp_path / "cache.json").sha256_file(f) == sha256_file(f)


def test_the_cache_keeps_at_most_max_entries(tmp_path):
    cache = StatCache(tmp_path / "cache.json", max_entries=3)
    files = [written(tmp_path / f"{i}.csv", str(i).encode()) for i in range(5)]
    before = [os.stat(f) for f in files]
    for f, st in zip(files, before, strict=True):
        cache.record(f, st, st, sha256_file(f), now=time.time() + 3600)
    assert [os.path.basename(k) for k in cache.entries] == ["2.csv", "3.csv", "4.csv"]


def test_a_tree_hash_through_the_cache_equals_the_plain_one(tmp_path):
    for i in range(3):
        (tmp_path / "t" / "d").mkdir(parents=True, exist_ok=True)
        written(tmp_path / "t" / "d" / f"{i}.bin", os.urandom(1000))
    time.sleep(StatCache.RACY_SECONDS + 0.1)
    cache = StatCache(tmp_path / "cache.json")
    assert sha256_tree(tmp_path / "t", cache) == sha256_tree(tmp_path / "t")
    assert sha256_tree(tmp_path / "t", cache) == sha256_tree(tmp_path / "t")
    assert (cache.hits, cache.misses) == (3, 3)


@pytest.mark.slow
def test_ingest_reuse_reads_no_file_and_a_changed_file_is_read(tmp_path, monkeypatch):
    """The second ingest of unchanged landing files reads neither them nor the snapshot; a
    landing file rewritten (same size, mtime put back) is hashed again (another snapshot id)."""
    from pipelines.ingest import describe_files, ingest
    from pipelines.snapshots import hash_cache_file

    cfg = make_cfg({"column": "y", "task": "binary", "classes": [0, 1], "positive_class": 1},
                   [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}])
    land(tmp_path, "tiny", ["x", "y"], [[i, i % 2] for i in range(200)])
    part = tmp_path / "landing" / "tiny" / SPAN.isoformat() / "part-0.csv"
    first = ingest(cfg, tmp_path, CTX, span=SPAN)
    time.sleep(StatCache.RACY_SECONDS + 0.1)  # the snapshot's files leave the racy window
    second = ingest(cfg, tmp_path, CTX, span=SPAN)  # hashes once more, now cacheable
    assert second["reused"] and second["sha256"] == first["sha256"]

    def refuse(*args, **kwargs):
        raise AssertionError(f"read a file on a reuse: {args}")

    with monkeypatch.context() as m:
        m.setattr(csv_parse, "open_regular", refuse)
        m.setattr(hashing, "sha256_file", refuse)
        m.setattr("builtins.open", refuse)
        third = ingest(cfg, tmp_path, CTX, span=SPAN)
    assert third["reused"] and third["snapshot_id"] == first["snapshot_id"]
    assert third["sha256"] == first["sha256"] == sha256_tree(first["uri"])
    assert third["inputs"][0]["sha256"] == sha256_file(part)

    st = os.stat(part)
    text = part.read_bytes()
    part.write_bytes(text.replace(b"199,1", b"199,0"))  # same size, another label
    os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns))
    cache = StatCache(hash_cache_file(cfg, tmp_path))
    [described] = describe_files([str(part)], None, cache)  # what decides the snapshot id
    assert described["sha256"] == sha256_file(part) != first["inputs"][0]["sha256"]
    assert (cache.hits, cache.misses) == (0, 1)


CHILD = """
import json, sys, time
from pathlib import Path
t0, c0 = time.perf_counter(), time.process_time()
from pipelines.config import load_config
from pipelines.context import RunContext
from pipelines.ingest import ingest
from pipelines.train import train
from pipelines.validate import validate
cfg, home, ctx = load_config(sys.argv[1]), Path(sys.argv[2]), RunContext(run_id="reuse")
out = {"imports_s": time.perf_counter() - t0}
import datetime as dt
t = time.perf_counter()
snap = ingest(cfg, home, ctx, span=dt.date.fromisoformat(sys.argv[3]), window=7)
out["ingest"] = {"reused": snap["reused"], "s": time.perf_counter() - t}
t = time.perf_counter()
val = validate(cfg, home, ctx, snapshot_uri=snap["uri"])
out["validate"] = {"reused": val["reused"], "s": time.perf_counter() - t}
t = time.perf_counter()
model = train(cfg, home, ctx, transform_uri=sys.argv[4])
out["train"] = {"reused": model["reused"], "s": time.perf_counter() - t}
out["cpu_s"] = time.process_time() - c0
out["heavy"] = sorted(m for m in ("tensorflow", "tensorflow_transform", "apache_beam", "pandas",
                                  "great_expectations") if m in sys.modules)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_reused_ingest_validate_and_train_import_nothing_heavy(adult_cfg, pipeline_home, snapshot,
                                                               transformed, trained):
    """A fresh process whose ingest, validate and train inputs are unchanged finds all three
    artifacts without TensorFlow, Beam, pandas or GX (they cost seconds to import). Times are
    printed, and benchmarked in benchmarks/results/scale.md, not asserted."""
    import json
    import subprocess
    import sys

    from pipelines.config import REPO_ROOT
    from tests.conftest import END_DATE

    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO_ROOT / "configs" / "adult.yaml"),
         str(pipeline_home), END_DATE.isoformat(), transformed["transform_uri"]],
        capture_output=True, text=True, cwd=str(REPO_ROOT),
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin", "TF_USE_LEGACY_KERAS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    print("reuse in a fresh process:", got)
    assert got["ingest"]["reused"] and got["validate"]["reused"] and got["train"]["reused"]
    assert got["heavy"] == [], f"a reuse imported {got['heavy']}"
