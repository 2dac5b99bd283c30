"""The lineage store on a real PostgreSQL server (Debian's packages), started on loopback."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.lineage.store import dispose_engines
from tests.lineage.conftest import run_fake_chain


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres(cmd: list[str]) -> list[str]:
    """root may not run the server: run it as the `postgres` account the package creates."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql, "
                    "scripts/install-system-deps.sh)")
    data = Path(tempfile.mkdtemp(prefix="lineage-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = dict(check=True, capture_output=True, timeout=120)
    subprocess.run(_as_postgres([initdb, "-D", str(data / "db"), "-U", "lineage",
                                 "--auth=trust", "-E", "UTF8"]), **run)
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data / "db"), "-l", str(data / "log"), "-w",
                                 "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
                                 "start"]), **run)
    try:
        yield f"postgresql+psycopg2://lineage@127.0.0.1:{port}/postgres"
    finally:
        dispose_engines()
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data / "db"), "-m", "fast", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.usefixtures("fake_steps_wired")
def test_store_and_queries_on_postgresql(adult_cfg, store_home, landing_files, postgres_url,
                                         monkeypatch):
    monkeypatch.setenv("PIPELINES_LINEAGE_URL", postgres_url)
    dispose_engines()
    done = run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="pg-run",
                          dag_id="retrain_adult", try_number=1)
    assert not (store_home / "lineage.db").exists()

    def cli(*args):
        result = CliRunner().invoke(app, ["--home", str(store_home), "lineage", *args])
        return result.exit_code, result.stdout

    code, out = cli("model", "adult", "1", "--json")
    chain = json.loads(out)
    assert code == 0 and {f["uri"] for f in chain["source_files"]} == set(landing_files)
    assert chain["promotion"][0]["version"] == 1
    assert [x["step"] for x in chain["executions"]] == [
        "ingest", "validate", "transform", "train", "evaluate", "promote"]
    assert chain["executions"][0]["dag_id"] == "retrain_adult"
    code, out = cli("data", landing_files[0], "--json")
    assert code == 0 and json.loads(out)["promotions"][0]["version"] == 1
    code, out = cli("verify", "adult", "1", "--json")
    assert code == 0 and json.loads(out)["ok"]
    code, out = cli("runs", "adult", "--json")
    assert json.loads(out)["runs"][0]["outcome"] == "promoted"
    # the readers' engine refuses writes on PostgreSQL too
    from sqlalchemy import text

    from pipelines.lineage.store import get_engine

    with get_engine(store_home, readonly=True).connect() as conn, pytest.raises(
            Exception, match="read-only transaction"):
        conn.execute(text("DELETE FROM events"))
    assert done["promote"]["version"] == 1
