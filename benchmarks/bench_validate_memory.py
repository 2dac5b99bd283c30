"""Benchmark: peak memory and time of `pipelines validate` at Adult x1 and x20 (issue 11 item 5).

Run by hand: `.venv/bin/python benchmarks/bench_validate_memory.py --scales 1 20 [--label after]
[--code DIR]`. Per scale, in a store kept under ``--work`` (default /tmp/vmem_x<scale>): the first
time, the window is staged with benchmarks/bench_scale.py's helpers (Adult's rows repeated ``scale``
times, copy ``r`` with fnlwgt + r) and ingested. A copy of that snapshot, ingested one second later
(its provenance's ``ingested_at`` moved), is the "next day" snapshot. Then, with every stored
verdict removed first:

- ``validate`` of the window: the whole suite, duplicates, no drift (no earlier snapshot);
- ``validate_next`` of the copy: the same plus drift against the window's stored profile.

Each is ``pipelines validate configs/adult.yaml --snapshot ...`` in its own process (``--code``
runs it from a fixed copy of the repo, e.g. ``git archive`` of the commit before the change):
wall seconds, CPU seconds (user + system, ``os.wait4``) and peak RSS (``ru_maxrss``), with the load
average before and after. Results merge by ``--label`` into benchmarks/results/validate_memory.json;
the Markdown page (validate_memory.md) is written by hand from them, with the profile notes.
Target (issue 11): at x20 peak memory <= 1.5 GB; memory that does not grow with rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_scale  # noqa: E402  (staging and the measured child process)

RESULTS = REPO / "benchmarks" / "results" / "validate_memory.json"
CONFIG = str(REPO / "configs" / "adult.yaml")


def prepare(home: Path, scale: int) -> tuple[str, str]:
    """The window snapshot and its one-second-later copy, staged and ingested once per store."""
    marker = home / "bench_snapshots.json"
    if marker.is_file():
        doc = json.loads(marker.read_text())
        return doc["window"], doc["next"]
    shutil.rmtree(home, ignore_errors=True)
    (home / "logs").mkdir(parents=True)
    rows = bench_scale.stage(home, scale)
    print(f"x{scale}: {rows:,} rows staged", flush=True)
    out = bench_scale.run_step(home, ["ingest", CONFIG, "--span", bench_scale.END.isoformat(),
                                      "--window", "7"], home / "logs" / "ingest.log")
    if out["exit"]:
        raise SystemExit(f"ingest failed: see {home / 'logs' / 'ingest.log'}")
    window = Path(out["result"]["uri"])
    nxt = window.with_name(window.name + "-next")
    shutil.copytree(window, nxt)
    prov = json.loads((nxt / "provenance.json").read_text())
    at = dt.datetime.fromisoformat(prov["ingested_at"]) + dt.timedelta(seconds=1)
    prov["ingested_at"] = at.isoformat()
    (nxt / "provenance.json").write_text(json.dumps(prov, indent=2))
    marker.write_text(json.dumps({"window": str(window), "next": str(nxt), "rows": rows}))
    return str(window), str(nxt)


def measure(scale: int, work: Path) -> dict:
    home = work / f"vmem_x{scale}"
    window, nxt = prepare(home, scale)
    rows = json.loads((home / "bench_snapshots.json").read_text())["rows"]
    out: dict = {"scale": scale, "rows": rows}
    for snap in (window, nxt):
        shutil.rmtree(Path(snap).with_name(Path(snap).name + ".validation"), ignore_errors=True)
    for name, snap in (("validate", window), ("validate_next", nxt)):
        r = bench_scale.run_step(home, ["validate", CONFIG, "--snapshot", snap],
                                 home / "logs" / f"{name}.log")
        res = r.pop("result") or {}
        r["status"] = res.get("status")
        r["failures"] = res.get("failures")
        r["seconds_in_step"] = res.get("seconds")
        out[name] = r
        print(f"x{scale} {name}: {json.dumps(r)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="*", default=[1, 20])
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    parser.add_argument("--label", default="after", help="name of this code state, e.g. before")
    parser.add_argument("--code", type=Path, help="run validate from this copy of the repo")
    args = parser.parse_args()
    bench_scale.CODE = args.code
    doc = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"benchmark": "validate_memory",
                                                                      "runs": {}}
    for scale in args.scales:
        run = measure(scale, args.work)
        run["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        run["code"] = str(args.code or REPO)
        doc["runs"].setdefault(args.label, {})[f"x{scale}"] = run
        RESULTS.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
