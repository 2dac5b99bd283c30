"""When promote may take an infra check started ahead of it (`pipelines run` starts it during
evaluate): only for the same SavedModel bytes and the same arguments. The child here is a stand-in
interpreter that prints a record naming the folder it was given (our plumbing, not TensorFlow's:
the real check runs in tests/model/test_tasks.py and the e2e runs)."""

from __future__ import annotations

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
    yield trained, copy, sha256_tree(trained)
    infra_check.discard()


def test_a_prestarted_check_of_the_same_bytes_stands_for_the_copy(models):
    trained, copy, sha = models
    assert infra_check.prestart(trained, "golden/*", n=5) == sha
    record = infra_check.check(copy, "golden/*", n=5, sha256=sha)
    assert record["passed"] and record["prestarted"]
    assert record["model_dir"] == str(trained) and record["same_sha256_as"] == str(copy)
    # taken once: the next check starts its own child, on the folder it is given
    again = infra_check.check(copy, "golden/*", n=5, sha256=sha)
    assert again["model_dir"] == str(copy) and "prestarted" not in again


@pytest.mark.parametrize("change", ["n", "pattern", "task", "no sha256"])
def test_other_arguments_get_a_check_of_their_own(models, change):
    trained, copy, sha = models
    infra_check.prestart(trained, "golden/*", n=5)
    kwargs = {"n": 5, "task": "binary", "sha256": sha}
    pattern = "eval/*" if change == "pattern" else "golden/*"
    if change == "n":
        kwargs["n"] = 6
    elif change == "task":
        kwargs["task"] = "regression"
    elif change == "no sha256":
        kwargs["sha256"] = None
    record = infra_check.check(copy, pattern, **kwargs)
    assert record["model_dir"] == str(copy) and "prestarted" not in record
    (child, _), = infra_check._PRESTARTED.values()
    infra_check.discard()
    assert child.proc.poll() is not None and not infra_check._PRESTARTED  # killed and reaped


def test_bytes_changed_after_the_prestart_are_checked_again(models):
    trained, copy, sha = models
    infra_check.prestart(trained, "golden/*", n=5)
    (trained / "saved_model.pb").write_bytes(b"other bytes")
    record = infra_check.check(copy, "golden/*", n=5, sha256=sha)
    assert record["model_dir"] == str(copy) and "prestarted" not in record


def test_a_failed_prestarted_check_is_a_failed_check(models, monkeypatch, tmp_path):
    trained, copy, sha = models
    crash = tmp_path / "crash"
    crash.write_text("#!/bin/sh\necho 'Traceback: no serving_default' >&2\nexit 1\n")
    crash.chmod(crash.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(infra_check.sys, "executable", str(crash))
    infra_check.prestart(trained, "golden/*", n=5)
    record = infra_check.check(copy, "golden/*", n=5, sha256=sha)
    assert record["passed"] is False
    assert "exited 1 without a result" in record["reasons"][0]
    assert "no serving_default" in record["reasons"][0]
