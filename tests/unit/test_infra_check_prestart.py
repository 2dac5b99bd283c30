"""When promote may take the infra check that evaluate ran ahead of it and kept: only for the same
SavedModel bytes and the same arguments, once, and while fresh. The child here is a stand-in
interpreter that prints a record naming the folder it was given (our plumbing, not TensorFlow's:
the real check runs in tests/model/test_tasks.py and the e2e runs)."""

from __future__ import annotations

import json
import shutil
import stat

import pytest

from pipelines import infra_check
from pipelines.hashing import sha256_tree

FAKE = """#!/bin/sh
# argv: -m pipelines.infra_check --model DIR ...
echo '{"passed": true, "reasons": [], "model_dir": "'"$4"'", "pid": '$$'}'
"""


@pytest.fixture
def models(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text(FAKE)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(infra_check.sys, "executable", str(fake))
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "saved_model.pb").write_bytes(b"model bytes")
    copy = tmp_path / "registry-copy"
    shutil.copytree(trained, copy)
    return trained, copy, sha256_tree(trained), tmp_path / "kept"


def test_a_kept_check_of_the_same_bytes_stands_for_the_copy_once(models):
    trained, copy, sha, kept = models
    child = infra_check.prestart(trained, "golden/*", n=5)
    assert infra_check.keep(child, kept) is not None and child.proc.poll() == 0
    record = infra_check.check(copy, "golden/*", n=5, sha256=sha, kept=kept)
    assert record["passed"] and record["prestarted"]
    assert record["model_dir"] == str(trained) and record["same_sha256_as"] == str(copy)
    assert not list(kept.iterdir())  # taken once: the next check starts its own child
    again = infra_check.check(copy, "golden/*", n=5, sha256=sha, kept=kept)
    assert again["model_dir"] == str(copy) and "prestarted" not in again


@pytest.mark.parametrize("change",
                         ["n", "pattern", "task", "no sha256", "other sha256", "no folder"])
def test_other_arguments_get_a_check_of_their_own(models, change):
    trained, copy, sha, kept = models
    infra_check.keep(infra_check.prestart(trained, "golden/*", n=5), kept)
    kwargs = {"n": 5, "task": "binary", "sha256": sha, "kept": kept}
    pattern = "eval/*" if change == "pattern" else "golden/*"
    if change == "n":
        kwargs["n"] = 6
    elif change == "task":
        kwargs["task"] = "regression"
    elif change == "no sha256":
        kwargs["sha256"] = None
    elif change == "other sha256":
        kwargs["sha256"] = "0" * 64
    elif change == "no folder":
        kwargs["kept"] = None
    record = infra_check.check(copy, pattern, **kwargs)
    assert record["model_dir"] == str(copy) and "prestarted" not in record


def test_bytes_changed_while_it_ran_are_not_kept(models):
    trained, copy, sha, kept = models
    child = infra_check.prestart(trained, "golden/*", n=5)
    (trained / "saved_model.pb").write_bytes(b"other bytes")
    assert infra_check.keep(child, kept) is None and not kept.exists()
    record = infra_check.check(copy, "golden/*", n=5, sha256=sha, kept=kept)
    assert record["model_dir"] == str(copy) and "prestarted" not in record


def test_a_stale_kept_check_is_done_again(models, monkeypatch):
    trained, copy, sha, kept = models
    target = infra_check.keep(infra_check.prestart(trained, "golden/*", n=5), kept)
    doc = json.loads(target.read_text())
    target.write_text(json.dumps(dict(doc, kept_at=doc["kept_at"] - infra_check.KEPT_FOR_S - 1)))
    record = infra_check.check(copy, "golden/*", n=5, sha256=sha, kept=kept)
    assert record["model_dir"] == str(copy) and "prestarted" not in record


def test_a_failed_kept_check_is_a_failed_check(models, monkeypatch, tmp_path):
    trained, copy, sha, kept = models
    crash = tmp_path / "crash"
    crash.write_text("#!/bin/sh\necho 'Traceback: no serving_default' >&2\nexit 1\n")
    crash.chmod(crash.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(infra_check.sys, "executable", str(crash))
    infra_check.keep(infra_check.prestart(trained, "golden/*", n=5), kept)
    record = infra_check.check(copy, "golden/*", n=5, sha256=sha, kept=kept)
    assert record["passed"] is False and record["prestarted"]
    assert "exited 1 without a result" in record["reasons"][0]
    assert "no serving_default" in record["reasons"][0]


def test_a_check_not_wanted_is_killed_and_reaped(models, monkeypatch, tmp_path):
    trained, *_ = models
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(infra_check.sys, "executable", str(slow))
    child = infra_check.prestart(trained, "golden/*", n=5)
    child.stop()
    assert child.proc.returncode is not None and child.proc.returncode < 0  # killed, reaped


@pytest.mark.parametrize("content", ["not json", "{}", '{"kept_at": "x", "record": {}}', "[1]"])
def test_an_unreadable_kept_file_means_a_new_check(models, content):
    trained, copy, sha, kept = models
    target = infra_check.keep(infra_check.prestart(trained, "golden/*", n=5), kept)
    target.write_text(content)
    record = infra_check.check(copy, "golden/*", n=5, sha256=sha, kept=kept)
    assert record["model_dir"] == str(copy) and "prestarted" not in record


def test_a_record_that_cannot_be_written_is_not_kept_and_the_child_is_reaped(models, tmp_path):
    trained, copy, sha, _ = models
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    child = infra_check.prestart(trained, "golden/*", n=5)
    assert infra_check.keep(child, not_a_folder / "kept") is None
    assert child.proc.returncode is not None
