"""Issue 14 (items 12, 13): ``force`` writes a new artifact beside the old one and never rewrites
one that lineage points to; ``publish`` leaves no moment without an artifact and sweeps the
temporary folders of writers that died.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import store
from pipelines.hashing import sha256_tree
from pipelines.snapshots import hash_cache_file
from pipelines.store import publish
from tests.conftest import END_DATE


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file()}


# -- publish -------------------------------------------------------------------------------------

def test_revision_is_the_next_free_suffix(tmp_path):
    final = tmp_path / "abc"
    assert store.revision(final) == tmp_path / "abc-r1"
    (tmp_path / "abc-r1").mkdir()
    (tmp_path / "abc-r2").mkdir()
    assert store.revision(final) == tmp_path / "abc-r3"


def test_replace_leaves_no_moment_without_the_artifact(tmp_path, monkeypatch):
    """Every rename publish makes happens while ``final`` holds a complete artifact: a reader
    finds the old folder or the new one, never none."""
    final = tmp_path / "artifact"
    with publish(final) as tmp:
        (tmp / "f.txt").write_text("old")
    real_rename, seen = os.rename, []

    def rename(src, dst):
        seen.append((Path(src).name, Path(dst).name, (final / "f.txt").is_file()))
        return real_rename(src, dst)

    monkeypatch.setattr(store.os, "rename", rename)
    with publish(final, replace=True) as tmp:
        (tmp / "f.txt").write_text("new")
    assert (final / "f.txt").read_text() == "new"
    assert seen and all(present for _, _, present in seen), seen
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".artifact.replaced-")]
    assert len(aside) == 1 and (aside[0] / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["artifact", aside[0].name])


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_publish_sweeps_temporary_folders_of_dead_writers_only(tmp_path):
    parent = tmp_path / "kind"
    parent.mkdir()
    dead, live, young = (parent / f".tmp-x-{n}" for n in ("dead", "live", "young"))
    for d in (dead, live, young):
        (d / "part").mkdir(parents=True)
        d.with_name(d.name + ".lock").touch()
    for d in (dead, live):
        _age(d, store.STALE_TMP_SECONDS + 60)
    held = os.open(live.with_name(live.name + ".lock"), os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # a writer still at work holds its lock
    try:
        with publish(parent / "new") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.close(held)
    names = {p.name for p in parent.iterdir()}
    assert dead.name not in names and dead.name + ".lock" not in names
    assert {live.name, young.name, "new"} <= names


def test_a_writer_killed_mid_publish_is_swept_by_the_next(tmp_path):
    parent = tmp_path / "kind"
    code = ("import os, sys, time\n"
            "from pathlib import Path\n"
            "from pipelines.store import publish\n"
            f"with publish(Path({str(parent / 'a')!r})) as tmp:\n"
            "    (tmp / 'half').write_text('half')\n"
            "    print('ready', flush=True)\n"
            "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout.readline().strip() == "ready"
        leftovers = [p for p in parent.iterdir() if p.name.startswith(".tmp-")]
        assert len(leftovers) == 2  # the folder and its lock
        with publish(parent / "b") as tmp:  # the writer is alive: its folder stays, even if old
            (tmp / "f").write_text("b")
        for p in leftovers:
            _age(p, store.STALE_TMP_SECONDS + 60)
        with publish(parent / "c") as tmp:
            (tmp / "f").write_text("c")
        assert all(p.exists() for p in leftovers)
    finally:
        proc.kill()  # kill -9: no cleanup runs in the writer
        proc.wait()
    assert all(p.exists() for p in leftovers)
    with publish(parent / "d") as tmp:
        (tmp / "f").write_text("d")
    assert sorted(p.name for p in parent.iterdir()) == ["b", "c", "d"]


# -- force on the real steps ----------------------------------------------------------------------

@pytest.mark.slow
def test_forced_ingest_writes_a_revision_and_leaves_the_old_snapshot_as_recorded(
        adult_cfg, tmp_path, ctx, staged):
    from pipelines.ingest import ingest
    from pipelines.lineage.audit import rehash
    from pipelines.validate import validate

    first = ingest(adult_cfg, tmp_path, ctx, span=END_DATE, landing=staged["landing"])
    verdict = validate(adult_cfg, tmp_path, ctx, snapshot_uri=first["uri"])
    before = file_bytes(Path(first["uri"]))
    verdict_before = file_bytes(Path(verdict["report_json"]).parent)

    again = ingest(adult_cfg, tmp_path, ctx, span=END_DATE, landing=staged["landing"], force=True)
    assert again["snapshot_id"] == first["snapshot_id"] + "-r1" and not again["reused"]
    assert again["uri"] != first["uri"]
    # The old snapshot and its verdict are byte-identical, where lineage recorded them: what
    # `lineage verify` re-hashes for every artifact of a chain built on them.
    assert file_bytes(Path(first["uri"])) == before
    assert rehash(first["uri"]) == ("present", first["sha256"])
    assert file_bytes(Path(verdict["report_json"]).parent) == verdict_before
    assert rehash(verdict["outputs"][0]["uri"]) == ("present", verdict["outputs"][0]["sha256"])
    # The new snapshot gets its own verdict, not the old one's.
    fresh = validate(adult_cfg, tmp_path, ctx, snapshot_uri=again["uri"])
    assert not fresh["reused"] and fresh["snapshot_id"] == again["snapshot_id"]
    # A later forced run makes -r2; an unforced one reuses the original.
    third = ingest(adult_cfg, tmp_path, ctx, span=END_DATE, landing=staged["landing"], force=True)
    assert third["snapshot_id"] == first["snapshot_id"] + "-r2"
    plain = ingest(adult_cfg, tmp_path, ctx, span=END_DATE, landing=staged["landing"])
    assert plain["reused"] and plain["uri"] == first["uri"]
    # nothing half-written or set aside is left (the ingest stat cache is the one dot file kept)
    assert not [p for p in (tmp_path / "snapshots" / "adult").iterdir()
                if p.name.startswith(".") and p != hash_cache_file(adult_cfg, tmp_path)]


@pytest.mark.slow
def test_forced_transform_writes_a_revision_beside_the_recorded_one(adult_cfg, pipeline_home,
                                                                    ctx, snapshot, transformed):
    from pipelines.lineage.audit import rehash
    from pipelines.transform import transform

    root = Path(transformed["transform_uri"])
    before = sha256_tree(root)
    again = transform(adult_cfg, pipeline_home, ctx, snapshot_uris=[snapshot["uri"]], force=True)
    try:
        assert again["transform_id"] == transformed["transform_id"] + "-r1"
        assert Path(again["transform_uri"]).parent == root.parent
        assert sha256_tree(root) == before
        for out in transformed["outputs"]:
            assert rehash(out["uri"]) == ("present", out["sha256"]), out["uri"]
    finally:  # the session's later tests expect one transform
        import shutil

        shutil.rmtree(again["transform_uri"], ignore_errors=True)
