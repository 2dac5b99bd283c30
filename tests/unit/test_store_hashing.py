"""Hashing and atomic writes: the primitives every artifact relies on."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.hashing import sha256_file, sha256_tree
from pipelines.store import publish, resolve_home


def test_sha256_file_matches_hashlib(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * 1000)
    assert sha256_file(f) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_sha256_tree_sees_content_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("one")
    first = sha256_tree(tmp_path / "a")
    (tmp_path / "a" / "f.txt").write_text("two")
    assert sha256_tree(tmp_path / "a") != first
    (tmp_path / "a" / "f.txt").write_text("one")
    assert sha256_tree(tmp_path / "a") == first
    (tmp_path / "a" / "f.txt").rename(tmp_path / "a" / "g.txt")
    assert sha256_tree(tmp_path / "a") != first


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "artifact"
    with pytest.raises(RuntimeError), publish(final) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("killed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_publishes_whole(tmp_path):
    final = tmp_path / "artifact"
    with publish(final) as tmp:
        (tmp / "f.txt").write_text("whole")
        assert not final.exists()
    assert (final / "f.txt").read_text() == "whole"


def test_home_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINES_HOME", str(tmp_path / "h"))
    assert resolve_home() == (tmp_path / "h").resolve()
    assert resolve_home(tmp_path / "x") == (tmp_path / "x").resolve()


def test_atomic_dir_replace_sets_the_old_copy_aside(tmp_path):
    final = tmp_path / "artifact"
    with publish(final) as tmp:
        (tmp / "f.txt").write_text("old")
    with publish(final) as tmp:  # an identical artifact exists: the new copy is dropped
        (tmp / "f.txt").write_text("new")
    assert (final / "f.txt").read_text() == "old"
    with publish(final, replace=True) as tmp:  # a forced re-run replaces it
        (tmp / "f.txt").write_text("new")
    assert (final / "f.txt").read_text() == "new"
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".artifact.replaced-")]
    assert len(aside) == 1 and (aside[0] / "f.txt").read_text() == "old"
