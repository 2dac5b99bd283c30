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

WRITER_PASSWORD = "writer-secret"


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
    (data / "pw").write_text(WRITER_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(data / "pw", "postgres", "postgres")
    # passwords over TCP (the roles' own credentials are checked), trust on the local socket only
    subprocess.run(_as_postgres([initdb, "-D", str(data / "db"), "-U", "lineage",
                                 "--auth-local=trust", "--auth-host=scram-sha-256",
                                 f"--pwfile={data / 'pw'}", "-E", "UTF8"]), **run)
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data / "db"), "-l", str(data / "log"), "-w",
                                 "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
                                 "start"]), **run)
    try:
        yield f"postgresql+psycopg2://lineage:{WRITER_PASSWORD}@127.0.0.1:{port}/postgres"
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


@pytest.mark.usefixtures("fake_steps_wired")
def test_the_auditor_role_reads_and_cannot_write(adult_cfg, store_home, landing_files,
                                                 postgres_url, monkeypatch):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("PIPELINES_LINEAGE_URL", postgres_url)
    monkeypatch.setenv("LINEAGE_AUDITOR_PASSWORD", "auditor-secret")
    dispose_engines()
    run_fake_chain(adult_cfg, store_home, landing_files, 3, run_id="pg-auditor")
    result = CliRunner().invoke(app, ["--home", str(store_home), "lineage", "auditor-role",
                                      "lineage_auditor"])
    assert result.exit_code == 0, result.output
    read_url = make_url(postgres_url).set(username="lineage_auditor", password="auditor-secret")
    read_url = read_url.render_as_string(hide_password=False)
    assert "lineage_auditor@" in result.output and "auditor-secret" not in result.output

    # the auditor's own connection: reads everything, writes nothing, even outside our engines
    engine = create_engine(read_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM chain_records")).scalar() > 0
        for stmt in ("INSERT INTO chain_heads (pipeline, seq, head_sha256) VALUES ('x', 1, 'y')",
                     "UPDATE executions SET status = 'completed'",
                     "DELETE FROM events", "CREATE TABLE forged (id int)"):
            with engine.connect() as conn:
                # the role's read-only default is belt and braces: switch it off, grants still hold
                conn.execute(text("SET default_transaction_read_only = off"))
                conn.commit()
                with pytest.raises(Exception, match="permission denied"):
                    conn.execute(text(stmt))
        bad = make_url(read_url).set(password="wrong").render_as_string(hide_password=False)
        with pytest.raises(Exception, match="password authentication failed"):
            create_engine(bad).connect()
    finally:
        engine.dispose()

    # the query commands connect with PIPELINES_LINEAGE_READ_URL: the auditor needs nothing else
    monkeypatch.delenv("PIPELINES_LINEAGE_URL")
    monkeypatch.setenv("PIPELINES_LINEAGE_READ_URL", read_url)
    dispose_engines()
    result = CliRunner().invoke(app, ["--home", str(store_home), "lineage", "verify", "adult",
                                      "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chain"]["ok"]
    from pipelines.lineage.store import get_engine

    with get_engine(store_home, readonly=True).connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == "lineage_auditor"


def test_concurrent_writers_never_fork_the_chain_on_postgresql(store_home, postgres_url,
                                                               monkeypatch):
    import subprocess as sp
    import sys
    import textwrap

    from pipelines.config import REPO_ROOT

    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from pathlib import Path
        from pipelines.config import load_config
        from pipelines.context import RunContext
        from pipelines.lineage import execution
        cfg = load_config(Path({str(REPO_ROOT)!r}) / "configs" / "penguins.yaml")
        for i in range(6):
            ctx = RunContext(run_id=f"w{{sys.argv[1]}}-{{i}}", triggered_by="test")
            with execution(cfg, Path({str(store_home)!r}), "ingest", ctx) as x:
                x.complete({{"outputs": [{{"kind": "Snapshot", "uri": f"/s/{{sys.argv[1]}}/{{i}}",
                                            "sha256": "b" * 64}}]}})
    """)
    env = {**os.environ, "PIPELINES_LINEAGE_URL": postgres_url}
    env.pop("PIPELINES_LINEAGE_READ_URL", None)
    procs = [sp.Popen([sys.executable, "-c", code, str(n)], cwd=REPO_ROOT, env=env,
                      stdout=sp.PIPE, stderr=sp.STDOUT, text=True) for n in range(4)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(text(
            "SELECT seq FROM chain_records WHERE pipeline = 'penguins' ORDER BY seq"))]
        parents = conn.execute(text("SELECT count(DISTINCT prev_sha256) FROM chain_records "
                                    "WHERE pipeline = 'penguins'")).scalar()
    engine.dispose()
    assert seqs == list(range(1, 49)) and parents == 48
    from pipelines.lineage.audit import check_chain

    monkeypatch.setenv("PIPELINES_LINEAGE_URL", postgres_url)
    monkeypatch.delenv("PIPELINES_LINEAGE_READ_URL", raising=False)
    dispose_engines()
    assert check_chain(store_home, "penguins")["ok"]
