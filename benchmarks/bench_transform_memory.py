"""Benchmark: peak memory of the transform step at Adult x1 and x20 (issue 11, item 5).

Run by hand: ``.venv/bin/python benchmarks/bench_transform_memory.py --scale 20 --work /tmp/tm-x20``.
The first call stages the scale (benchmarks/bench_scale.py's staging: the demo window with every
row repeated ``scale`` times), ingests the 7-span window and validates it; the store is kept, so
later calls only re-run ``pipelines transform <config> --snapshot <window>`` (the store's
transforms removed first, so nothing is reused) in a child process and measure it:

- peak RSS (the child's ``ru_maxrss`` from ``os.wait4``; Beam's FnApiRunner runs in the process),
- CPU seconds (user + system of the child) beside wall seconds, with the load average,
- RSS sampled from ``/proc/<pid>/status`` every ``--every`` seconds (where the memory goes over time),
- the transformed files' sha256 (the output must not change with a memory fix).

``--label`` names the run in benchmarks/results/transform_memory.json (runs are appended).
``--analyzer-cache`` runs the per-span path (a copy of the config with
``transform_analyzer_cache: true``): the first call analyzes every span (the store's analyzer
cache is emptied first), ``--analyzer-cache --keep-cache`` then reuses every span's accumulators.
``--env NAME=VALUE`` sets the step's environment (e.g. ``PYTHONPATH`` of a copy of older code).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import bench_scale  # noqa: E402  (staging and step running are shared with the scale benchmark)

RESULTS = REPO / "benchmarks" / "results" / "transform_memory.json"


def prepare(home: Path, scale: int) -> str:
    """The accepted window snapshot of ``home``, staged, ingested and validated on first use."""
    marker = home / "window.json"
    if marker.is_file():
        return json.loads(marker.read_text())["uri"]
    shutil.rmtree(home, ignore_errors=True)
    (home / "logs").mkdir(parents=True)
    rows = bench_scale.stage(home, scale)
    print(f"x{scale}: {rows:,} rows staged", flush=True)
    cfg = str(bench_scale.CONFIG)
    ing = bench_scale.run_step(home, ["ingest", cfg, "--span", bench_scale.END.isoformat(),
                                      "--window", "7"], home / "logs" / "ingest.log")
    if ing["exit"]:
        raise SystemExit(f"ingest failed: see {home / 'logs' / 'ingest.log'}")
    uri = ing["result"]["uri"]
    val = bench_scale.run_step(home, ["validate", cfg, "--snapshot", uri],
                               home / "logs" / "validate.log")
    if val["exit"]:
        raise SystemExit(f"validate failed: see {home / 'logs' / 'validate.log'}")
    marker.write_text(json.dumps({"uri": uri, "rows": rows, "scale": scale}))
    return uri


def measure(home: Path, uri: str, every: float, env_extra: dict[str, str],
            config: Path = bench_scale.CONFIG, label: str = "run") -> dict:
    """One ``pipelines transform`` in a child process, RSS sampled while it runs (the store's
    transforms are removed first, so it is never a reuse)."""
    shutil.rmtree(home / "transforms", ignore_errors=True)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PIPELINES_HOME": str(home), **env_extra}
    log = home / "logs" / f"transform-{label}-{time.strftime('%H%M%S')}.log"
    load_before = bench_scale.loadavg()
    samples: list[tuple[float, float]] = []
    t = time.perf_counter()
    with open(log, "wb") as err, open(log.with_suffix(".out"), "wb") as out:
        proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "pipelines"), "transform", str(config),
             "--snapshot", uri, "--json"], stdout=out, stderr=err, env=env, cwd=REPO)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        samples.append((round(time.perf_counter() - t, 1),
                                        round(int(line.split()[1]) / 1024, 1)))
            except OSError:
                pass
            time.sleep(every)
    wall = time.perf_counter() - t
    text = log.with_suffix(".out").read_text()
    result = json.loads(text[text.index("{"):]) if "{" in text else {}
    return {"exit": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "load_before": load_before, "load_after": bench_scale.loadavg(),
            "rows": result.get("rows"),
            "analysis": [part["cache"] for part in result.get("analysis") or []] or None,
            "data_sha256": {o["properties"].get("split"): o["sha256"]
                            for o in result.get("outputs", [])
                            if o["properties"].get("split")},
            "transform_uri": result.get("transform_uri"), "log": str(log),
            "rss_samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--work", type=Path, default=None, help="default /tmp/tm-x<scale>")
    parser.add_argument("--every", type=float, default=1.0, help="RSS sampling period (s)")
    parser.add_argument("--label", default="run")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the step (experiments)")
    parser.add_argument("--analyzer-cache", action="store_true",
                        help="the per-span analysis path (transform_analyzer_cache: true)")
    parser.add_argument("--keep-cache", action="store_true",
                        help="with --analyzer-cache: keep the accumulators of an earlier run")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    home = args.work or Path(f"/tmp/tm-x{args.scale}")
    uri = prepare(home, args.scale)
    config = bench_scale.CONFIG
    if args.analyzer_cache:
        config = home / "adult-analyzer-cache.yaml"
        config.write_text(bench_scale.CONFIG.read_text() + "\ntransform_analyzer_cache: true\n")
        if not args.keep_cache:
            shutil.rmtree(home / "analyzer_cache", ignore_errors=True)
    run = measure(home, uri, args.every, dict(e.split("=", 1) for e in args.env), config,
                  args.label)
    run.update(label=args.label, scale=args.scale, analyzer_cache=args.analyzer_cache,
               cache_kept=args.keep_cache,
               at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    summary = {k: v for k, v in run.items() if k != "rss_samples"}
    print(json.dumps(summary), flush=True)
    if not args.no_save:
        doc = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
        doc["runs"].append(run)
        RESULTS.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
