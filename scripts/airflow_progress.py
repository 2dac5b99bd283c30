"""Prints one line per task of a DAG run as it starts and as it ends (state, seconds).

Used by scripts/demo.sh beside ``airflow dags test`` (which prints nothing readable for minutes),
and by scripts/stack.sh users to follow a triggered run. It polls the Airflow metadata DB named by
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` (SQLite or PostgreSQL) with SQLAlchemy only: no Airflow
import, so it costs a few MB and no CPU between polls.

    python scripts/airflow_progress.py retrain_adult [--run-id ID] [--since EPOCH] [--pid PID]

Follows the newest run of the DAG created after ``--since`` (or ``--run-id``), until that run is
finished or process ``--pid`` (the ``airflow dags test`` it watches) has exited.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}
RUN_FINISHED = {"success", "failed"}


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _as_datetime(value) -> dt.datetime | None:
    """SQLite hands back strings, PostgreSQL datetimes; both as aware UTC datetimes."""
    if value is None or isinstance(value, dt.datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class Follower:
    """Reads the task instances of one DAG run and yields the lines of what changed."""

    def __init__(self, url: str, dag_id: str, run_id: str | None = None,
                 since: dt.datetime | None = None):
        from sqlalchemy import create_engine

        self.engine = create_engine(url)
        self.dag_id, self.run_id, self.since = dag_id, run_id, since
        self.started: set[tuple[tuple[str, int], int]] = set()
        self.ended: dict[tuple[str, int], tuple[str, int]] = {}
        self.run_state: str | None = None

    def _find_run(self, conn) -> str | None:
        from sqlalchemy import text

        rows = conn.execute(text("SELECT run_id, created_at, run_after FROM dag_run "
                                 "WHERE dag_id = :d ORDER BY id DESC LIMIT 5"),
                            {"d": self.dag_id}).all()
        for run_id, created, run_after in rows:  # start_date is the logical date in `dags test`
            when = _as_datetime(created) or _as_datetime(run_after)
            if self.since is None or (when is not None and when >= self.since):
                return run_id
        return None

    def poll(self) -> list[str]:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        try:
            with self.engine.connect() as conn:
                if self.run_id is None:
                    self.run_id = self._find_run(conn)
                    if self.run_id is None:
                        return []
                self.run_state = conn.execute(
                    text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                    {"d": self.dag_id, "r": self.run_id}).scalar()
                rows = conn.execute(text(
                    "SELECT task_id, map_index, state, try_number, start_date, duration, hostname, "
                    "queue "
                    "FROM task_instance WHERE dag_id = :d AND run_id = :r"),
                    {"d": self.dag_id, "r": self.run_id}).all()
        except OperationalError:  # SQLite locked by the writer for a moment: next poll
            return []
        lines = []
        for task_id, map_index, state, try_number, start, duration, hostname, queue in rows:
            key, tries = (task_id, map_index), try_number or 0
            clock = dt.datetime.now().strftime("%H:%M:%S")
            started = start is not None and state not in (None, "scheduled", "none", "skipped")
            if started and (key, tries) not in self.started:
                # `dags test` runs a task in-process while its row still says queued; a task
                # that began and ended between two polls still gets its start line
                self.started.add((key, tries))
                retry = f" (try {tries})" if tries > 1 else ""
                where = f"  on {hostname} (queue {queue})" if hostname and queue != "default" else ""
                lines.append(f"  {clock}  {task_id:<11} started{retry}{where}")
            if (state in FINISHED or state == "up_for_retry") \
                    and self.ended.get(key) != (state, tries):
                self.ended[key] = (state, tries)
                secs = f"{duration:7.1f} s" if duration is not None else ""
                lines.append(f"  {clock}  {task_id:<11} {state:<15} {secs}".rstrip())
        return lines

    def done(self) -> bool:
        return self.run_state in RUN_FINISHED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dag_id")
    parser.add_argument("--run-id")
    parser.add_argument("--since", type=float, help="only a run started after this epoch time")
    parser.add_argument("--pid", type=int, help="stop once this process has exited")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    args = parser.parse_args(argv)
    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if not url:
        print("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not set: source scripts/airflow-env.sh",
              file=sys.stderr)
        return 2
    since = dt.datetime.fromtimestamp(args.since, dt.UTC) if args.since else None
    follower = Follower(url, args.dag_id, args.run_id, since)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        alive = _alive(args.pid)
        for line in follower.poll():
            print(line, flush=True)
        if follower.done() or not alive:
            return 0
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
