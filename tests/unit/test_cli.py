"""The `pipelines` CLI as a data engineer uses it: --json output, exit codes, clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import REPO_ROOT
from tests.conftest import END_DATE, RAW_DIR

CONFIG = str(REPO_ROOT / "configs" / "adult.yaml")


def run(home, *args):
    result = CliRunner().invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


def test_every_command_has_help():
    code, out, _ = run("/tmp", "--help")
    assert code == 0
    for command in ("demo-data", "ingest", "validate", "transform", "train", "evaluate",
                    "promote", "registry", "lineage", "run"):
        assert command in out
        sub = CliRunner().invoke(app, [command, "--help"])
        assert sub.exit_code == 0, command
        assert "Usage" in sub.stdout


def test_usage_errors_exit_2(tmp_path):
    code, _, err = run(tmp_path, "ingest", CONFIG, "--span", "20-11-2026")
    assert code == 2 and "YYYY-MM-DD" in err
    code, _, err = run(tmp_path, "ingest", str(tmp_path / "missing.yaml"))
    assert code == 2 and "config file not found" in err


@pytest.mark.slow
def test_ingest_and_validate_json_and_rejection_exit_4(tmp_path):
    home = tmp_path / "home"
    code, out, err = run(home, "demo-data", CONFIG, "--from", str(RAW_DIR), "--end",
                         END_DATE.isoformat(), "--json")
    assert code == 0, err
    staged = json.loads(out)
    code, out, err = run(home, "ingest", CONFIG, "--span", END_DATE.isoformat(), "--json")
    assert code == 0, err
    snap = json.loads(out)
    assert snap["rows"]["total"] == staged["files"][-2]["rows"] and not snap["reused"]
    code, out, err = run(home, "validate", CONFIG, "--snapshot", snap["snapshot_id"], "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "accepted"

    # A span whose ages went negative: ingest succeeds, validation rejects it with exit code 4.
    bad_day = "2026-11-21"
    shutil.copytree(home / "landing" / "adult" / END_DATE.isoformat(), home / "landing" / "adult" / bad_day)
    part = home / "landing" / "adult" / bad_day / "part-00000.csv"
    lines = part.read_text().splitlines()
    part.write_text("\n".join([lines[0]] + ["-" + line for line in lines[1:]]) + "\n")
    code, out, err = run(home, "ingest", CONFIG, "--span", bad_day, "--json")
    assert code == 0, err
    code, out, err = run(home, "validate", CONFIG, "--snapshot", json.loads(out)["snapshot_id"],
                         "--json")
    assert code == 4
    assert "column age" in err and "outside [17, 90]" in err
    assert json.loads(out)["status"] == "rejected"
