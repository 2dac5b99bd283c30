"""scripts/airflow_progress.py: one line per task as it starts and as it ends (state, seconds).

Against a metadata DB with the columns Airflow 3 uses (dag_run, task_instance), written the way
`airflow dags test` writes them (a running task's row may still say `queued`, with a start date).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sqlite3

from pipelines.config import REPO_ROOT

spec = importlib.util.spec_from_file_location("airflow_progress",
                                              REPO_ROOT / "scripts" / "airflow_progress.py")
progress = importlib.util.module_from_spec(spec)
spec.loader.exec_module(progress)


def _db(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id, run_id, state, created_at, "
                "run_after)")
    con.execute("CREATE TABLE task_instance (dag_id, run_id, task_id, map_index, state, "
                "try_number, start_date, duration, hostname, queue)")
    return con


def test_lines_for_start_end_retry_and_skip(tmp_path):
    con = _db(tmp_path / "airflow.db")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    old = "2020-01-01 00:00:00"
    con.execute("INSERT INTO dag_run VALUES (1, 'd', 'old', 'success', ?, ?)", (old, old))
    con.execute("INSERT INTO dag_run VALUES (2, 'd', 'new', 'running', ?, ?)", (now, now))
    ti = "INSERT INTO task_instance VALUES ('d', ?, ?, -1, ?, ?, ?, ?, ?, ?)"
    con.execute(ti, ("old", "ingest", "success", 1, old, 5.0, "h", "default"))
    con.execute(ti, ("new", "ingest", "queued", 1, now, None, "h", "default"))
    con.execute(ti, ("new", "train", None, 0, None, None, None, "heavy"))
    con.commit()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    f = progress.Follower(f"sqlite:///{tmp_path / 'airflow.db'}", "d", since=since)
    first = f.poll()
    assert f.run_id == "new" and len(first) == 1 and first[0].split()[1:] == ["ingest", "started"]
    assert f.poll() == []  # nothing changed, nothing printed
    con.execute("UPDATE task_instance SET state='success', duration=12.5 WHERE run_id='new' AND "
                "task_id='ingest'")
    con.execute("UPDATE task_instance SET state='up_for_retry', try_number=1, start_date=?, "
                "duration=3.0, hostname='heavy@h' WHERE task_id='train'", (now,))
    con.commit()
    lines = [line.split() for line in f.poll()]
    assert ["ingest", "success", "12.5", "s"] in [x[1:] for x in lines]
    assert ["train", "started", "on", "heavy@h", "(queue", "heavy)"] in [x[1:] for x in lines]
    assert ["train", "up_for_retry", "3.0", "s"] in [x[1:] for x in lines]
    con.execute("UPDATE task_instance SET state='running', try_number=2 WHERE task_id='train'")
    con.execute("UPDATE dag_run SET state='success' WHERE run_id='new'")
    con.commit()
    assert [x.split()[1:4] for x in f.poll()] == [["train", "started", "(try"]]
    assert f.done()
