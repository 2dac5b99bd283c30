"""Prints the outcome of the latest run of a DAG from the Airflow metadata DB, as JSON or text.

Called by scripts/demo.sh (the last lines `make demo` prints), the e2e tests and
benchmarks/bench_dag.py, with the environment of scripts/airflow-env.sh.

    python scripts/airflow_run_summary.py retrain_adult [--run-id ID] [--json]

Exit code as the `pipelines` CLI: 0 promoted, 3 the run succeeded but no model was promoted,
1 the run failed.
"""

from __future__ import annotations

import argparse
import json
import sys


def run_summary(dag_id: str, run_id: str | None = None) -> dict:
    """State of the run, of each task, and the return values (XComs) of its tasks."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == dag_id)
        query = (query.where(DagRun.run_id == run_id) if run_id
                 else query.order_by(DagRun.id.desc()).limit(1))
        dr = session.scalars(query).first()
        if dr is None:
            raise SystemExit(f"no run of {dag_id} {run_id or ''} in the Airflow DB")
        tis = session.execute(select(TaskInstance.task_id, TaskInstance.state, TaskInstance.try_number)
                              .where(TaskInstance.dag_id == dag_id,
                                     TaskInstance.run_id == dr.run_id)).all()
        rows = session.execute(select(XComModel.task_id, XComModel.value)
                               .where(XComModel.dag_id == dag_id, XComModel.run_id == dr.run_id,
                                      XComModel.key == "return_value")).all()
        xcoms = {}
        for task_id, value in rows:
            while isinstance(value, str | bytes):
                try:
                    value = json.loads(value)
                except ValueError:
                    break
            xcoms[task_id] = value
        events = session.execute(select(AssetModel.name, AssetEvent.extra)
                                 .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                                 .where(AssetEvent.source_dag_id == dag_id,
                                        AssetEvent.source_run_id == dr.run_id)).all()
        return {
            "asset_events": [{"asset": name, "extra": extra} for name, extra in events],
            "dag_id": dag_id, "run_id": dr.run_id, "state": str(dr.state),
            "run_type": str(dr.run_type), "conf": dr.conf,
            "logical_date": dr.logical_date.isoformat() if dr.logical_date else None,
            "seconds": (dr.end_date - dr.start_date).total_seconds()
            if dr.end_date and dr.start_date else None,
            "tasks": {t: str(s) if s else None for t, s, _ in tis},
            "tries": {t: n for t, _, n in tis},
            "xcom": xcoms,
        }


def describe(s: dict) -> str:
    lines = [f"{s['dag_id']} run {s['run_id']}: {s['state']}"]
    lines += [f"  {t:<10} {state}" for t, state in s["tasks"].items()]
    promote, report = s["xcom"].get("promote"), s["xcom"].get("report")
    evaluated = s["xcom"].get("evaluate") or {}
    if promote:
        lines.append(f"promoted model version: {promote.get('version')}")
        lines.append(f"registry: {promote.get('registry_uri')}")
    else:
        reasons = "; ".join(evaluated.get("reasons") or []) or "see the task logs"
        lines.append(f"model not promoted: {reasons}")
    if report:
        lines.append(f"audit report: {report.get('report_html')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dag_id")
    parser.add_argument("--run-id")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    summary = run_summary(args.dag_id, args.run_id)
    print(json.dumps(summary, indent=2, default=str) if args.json else describe(summary))
    if summary["state"] != "success":
        return 1
    return 0 if summary["xcom"].get("promote") else 3  # the CLI's exit codes: 3 = not promoted


if __name__ == "__main__":
    sys.exit(main())
