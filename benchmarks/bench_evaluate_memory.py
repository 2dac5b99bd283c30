"""Benchmark: peak memory of evaluate's TFMA run as the rows grow (issue 11 item 5, x20 <= 1.5 GB).

Builds (or, with --home, reuses) bench_evaluate's chain on the real Adult data: a snapshot, the
golden set and two models, one of them production. Then, for each factor k, it lists the eval
split's and the golden set's TFRecord files k times (symbolic links: k copies of the rows, no
extra disk) and runs ``pipelines.eval_tfma.run`` (candidate and baseline, every slicing spec, both
datasets) in a fresh child process: peak RSS (the child's ``ru_maxrss``), CPU and wall seconds.
With --before-code (a folder holding an older ``pipelines`` package, e.g. from `git archive`) it
runs that code on the same data too. Writes benchmarks/results/evaluate_memory.json and .md.

    python benchmarks/bench_evaluate_memory.py --factors 1 10 20 [--home H] [--before-code DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
TARGET_MB = 1536  # issue 11: x20, peak memory <= 1.5 GB in every step
CHILD = """
import json, resource, sys, time
from pathlib import Path
t, w = time.process_time(), time.time()
from pipelines import eval_tfma
from pipelines.config import load_config
cfg = load_config(sys.argv[1])
eval_tfma.run(cfg, json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5]))
print(json.dumps({"cpu_s": round(time.process_time() - t, 1), "wall_s": round(time.time() - w, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def linked(src_pattern: str, dest: Path, k: int) -> tuple[str, int]:
    """``dest/*.tfrecord``: every file of ``src_pattern`` linked ``k`` times; (pattern, files)."""
    files = sorted(glob.glob(src_pattern))
    if not files:
        raise SystemExit(f"no file matches {src_pattern}")
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(k):
        for j, f in enumerate(files):
            (dest / f"copy{i:03d}-{j:03d}.tfrecord").symlink_to(f)
    return str(dest / "*.tfrecord"), len(files) * k


def run_child(code: Path, datasets: dict, candidate: str, baseline: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "TF_USE_LEGACY_KERAS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "configs" / "adult.yaml"),
                           json.dumps(datasets), candidate, baseline, str(out)],
                          capture_output=True, text=True, env=env, cwd=str(code))
    if proc.returncode:
        raise SystemExit(f"evaluate child failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_1m": round(load, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--home", type=Path, help="a home bench_evaluate built (kept with --keep)")
    parser.add_argument("--before-code", type=Path, help="also run this copy of the code")
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from benchmarks.bench_evaluate import build_chain
    from pipelines import registry
    from pipelines.config import load_config

    home = args.home or Path(tempfile.mkdtemp(prefix="bench_evalmem_"))
    chain = build_chain(home) if not args.home else None
    cfg = load_config(REPO / "configs" / "adult.yaml")
    if chain is None:  # the oldest evaluation of that home names its data and candidate
        rec = json.loads(Path(sorted(glob.glob(str(home / "evaluations/adult/*/evaluation.json")))[0])
                         .read_text())
        chain = {"snapshot": rec["data"]["eval"][0]["uri"], "golden": rec["data"]["golden"]["uri"],
                 "candidate": rec["model"]["uri"]}
    baseline = registry.production(cfg, home)["uri"]
    candidate = str(Path(chain["candidate"]) / "saved_model") \
        if (Path(chain["candidate"]) / "saved_model").is_dir() else chain["candidate"]
    baseline = str(Path(baseline) / "saved_model") if (Path(baseline) / "saved_model").is_dir() \
        else baseline
    work = Path(tempfile.mkdtemp(prefix="evalmem_"))
    rows = []
    for k in args.factors:
        ev, n_ev = linked(f"{chain['snapshot']}/eval/*.tfrecord", work / f"x{k}" / "eval", k)
        gd, n_gd = linked(f"{chain['golden']}/test/*.tfrecord", work / f"x{k}" / "golden", k)
        datasets = {"eval": [ev], "golden": [gd]}
        for label, code in (("before", args.before_code), ("after", REPO)):
            if code is None:
                continue
            r = run_child(code, datasets, candidate, baseline, work / f"out-{label}-{k}")
            rows.append({"factor": k, "code": label, **r})
            print(json.dumps(rows[-1]), flush=True)
    result = {"measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
              "target_mb": TARGET_MB, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "evaluate_memory.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Evaluate's peak memory as rows grow (benchmarks/bench_evaluate_memory.py)", "",
             f"{result['measured']}, {result['machine']}. Adult's eval split and golden set, each "
             "file listed k times; candidate and production baseline, every slicing spec; "
             "`eval_tfma.run` in a fresh child process.", "",
             "| k | code | peak RSS MB | CPU s | wall s | load 1m |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['factor']} | {r['code']} | {r['peak_rss_mb']} | {r['cpu_s']} | {r['wall_s']} "
              f"| {r['load_1m']} |" for r in rows]
    (RESULTS / "evaluate_memory.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
