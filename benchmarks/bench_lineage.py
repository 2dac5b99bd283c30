"""Lineage store benchmark: the cost of recording a step, and of each auditor query.

Runs N synthetic chains (ingest → validate → transform → train → evaluate → promote, the fake steps
of tests/lineage, real files and hashes, no ML stack) through ``runner.run_step`` into a fresh
SQLite store, then times ``lineage model|data|verify|runs`` on the newest version. Writes
benchmarks/results/lineage.json and lineage.md. Usage: ``python benchmarks/bench_lineage.py [N]``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for key in [k for k in os.environ if k.startswith("OPENLINEAGE") or k == "PIPELINES_LINEAGE_URL"]:
    del os.environ[key]

from pipelines import runner  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.lineage.audit import list_runs, verify_model  # noqa: E402
from pipelines.lineage.query import data_lineage, model_lineage  # noqa: E402
from pipelines.lineage.store import dispose_engines  # noqa: E402
from tests.lineage import fake_steps  # noqa: E402
from tests.lineage.conftest import run_fake_chain  # noqa: E402


def timed(fn, repeat: int = 5) -> float:
    """Median wall seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(chains: int = 50) -> dict:
    runner.STEPS.update(fake_steps.STEPS)
    cfg = load_config(ROOT / "configs" / "adult.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        home, landing = Path(tmp) / "home", Path(tmp) / "landing"
        landing.mkdir()
        first = landing / "base.csv"
        first.write_text("1,a\n" * 1000)
        start = time.perf_counter()
        for i in range(chains):
            day = landing / f"day-{i}.csv"
            day.write_text(f"{i},b\n" * 1000)
            run_fake_chain(cfg, home, [str(first), str(day)], i + 1, run_id=f"run-{i}", seed=i)
        record_s = time.perf_counter() - start
        steps = chains * 6
        dispose_engines()
        version = str(chains)
        queries = {
            "model": timed(lambda: model_lineage(home, "adult", version)),
            "data_shared_file": timed(lambda: data_lineage(home, str(first)), repeat=3),
            "verify": timed(lambda: verify_model(home, "adult", version)),
            "runs": timed(lambda: list_runs(home, "adult")),
        }
        db_bytes = (home / "lineage.db").stat().st_size
        events = len((home / "openlineage" / "events.jsonl").read_text().splitlines())
    return {
        "chains": chains, "executions": steps, "openlineage_events": events,
        "record_ms_per_step": round(1000 * record_s / steps, 2),
        "query_ms": {k: round(1000 * v, 1) for k, v in queries.items()},
        "store_kib": round(db_bytes / 1024, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    result = main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lineage.json").write_text(json.dumps(result, indent=2) + "\n")
    q = result["query_ms"]
    (out / "lineage.md").write_text(
        f"# Lineage store (SQLite, {result['chains']} chains, {result['executions']} executions)\n\n"
        f"- recording a step (execution + artifacts + events + 2 OpenLineage events, fake step "
        f"body): {result['record_ms_per_step']} ms\n"
        f"- `lineage model`: {q['model']} ms; `lineage verify`: {q['verify']} ms; "
        f"`lineage runs`: {q['runs']} ms\n"
        f"- `lineage data` on a file that fed all {result['chains']} models: "
        f"{q['data_shared_file']} ms\n"
        f"- store size {result['store_kib']} KiB; peak RSS {result['peak_rss_mib']} MiB\n")
    print(json.dumps(result, indent=2))
