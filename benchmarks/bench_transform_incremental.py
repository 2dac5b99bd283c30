"""Benchmark of the incremental transform (issue 11 item 3): a daily window that shares 6 of its 7
spans with the previous day's, analyzed with TFT's analyzer cache per span, against a full analysis.

Run by `make bench` (python benchmarks/bench_transform_incremental.py [--repeats N]). Setup (not
timed): stage 8 daily Adult spans (`stage_sample_data`, as `pipelines demo-data` does), then ingest
and validate two daily windows as `pipelines run` does: A = days 1-7 (yesterday's run), B = days
2-8 (today's). Ingest writes each window's train split one file per span, so each span is one
part of the analysis. Each measured run is a fresh interpreter and a fresh home (the snapshots are
shared), timed around the `transform` call only:

- ``full``: window B, ``analyzer_cache=False``: the train rows analyzed as one dataset (TFT's
  AnalyzeAndTransformDataset), what the step did before: the reference ("before");
- ``cold``: window A with the cache on and empty: 7 spans analyzed, 7 entries written;
- ``incremental``: window B after window A's run in the same home: 6 spans from the cache, 1
  analyzed. Target: incremental <= 40% of full.

Wall and CPU seconds (``time.process_time``, all threads of the process) and the load average at
each run are recorded; the machine is shared, so CPU seconds are the steadier measure. One more
incremental run under cProfile gives the profile of what remains.
Writes benchmarks/results/transform_incremental.json and transform_incremental.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = REPO / "benchmarks" / "results"
TARGET_RATIO = 0.40
END = dt.date(2026, 11, 20)

CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import tensorflow, apache_beam, tensorflow_transform  # noqa: F401  (the fixed import cost)
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from pipelines.context import RunContext
from pipelines.config import load_config
from pipelines.transform import transform
home, mode, cache = sys.argv[2], sys.argv[3], sys.argv[4] == "1"
uris = json.loads(sys.argv[5])
cfg = load_config(os.path.join(sys.argv[1], "configs", "adult.yaml"))
run = lambda: transform(cfg, Path(home), RunContext(triggered_by="bench"), snapshot_uris=uris,
                        analyzer_cache=cache)
t1 = time.perf_counter()
c1 = time.process_time()
if mode == "profile":
    import cProfile, pstats, io
    prof = cProfile.Profile()
    result = prof.runcall(run)
    out = {}
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(30)
        out[key] = buf.getvalue()
    result["profile"] = out
else:
    result = run()
result["bench"] = {
    "import_s": round(t1 - t0, 2), "step_s": round(time.perf_counter() - t1, 2),
    "cpu_s": round(time.process_time() - c1, 2),
    "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    "load_1m": os.getloadavg()[0]}
print("RESULT" + json.dumps(result, default=str))
"""


def child(home: Path, uris: list[str], cache: bool, mode: str = "default") -> dict:
    """One transform in a fresh interpreter; its result with the ``bench`` numbers."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(home), mode,
                          "1" if cache else "0", json.dumps(uris)],
                         capture_output=True, text=True, timeout=1200)
    if out.returncode:
        raise RuntimeError(f"transform ({mode}, cache={cache}) failed:\n{out.stderr[-4000:]}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def setup(home: Path) -> tuple[list[str], list[str]]:
    """Stages 8 daily spans; ingests and validates yesterday's and today's windows (not timed)."""
    from pipelines.config import load_config
    from pipelines.context import RunContext
    from pipelines.ingest import ingest
    from pipelines.sample_data import stage_sample_data
    from pipelines.validate import validate

    cfg = load_config(REPO / "configs" / "adult.yaml")
    ctx = RunContext(triggered_by="bench")
    staged = stage_sample_data(cfg, home, END, days=8,
                               from_dir=REPO.parent / "shared" / "data" / "adult" / "raw")
    assert len(staged["spans"]) == 8
    uris = []
    for day in (END - dt.timedelta(days=1), END):
        snap = ingest(cfg, home, ctx, span=day, window=7)
        validate(cfg, home, ctx, snapshot_uri=snap["uri"])
        uris.append(snap["uri"])
    return [uris[0]], [uris[1]]


def summary(runs: list[dict]) -> dict:
    steps = sorted(r["bench"]["step_s"] for r in runs)
    cpus = sorted(r["bench"]["cpu_s"] for r in runs)
    return {"step_s_min": steps[0], "step_s_median": steps[len(steps) // 2],
            "cpu_s_min": cpus[0], "cpu_s_median": cpus[len(cpus) // 2],
            "runs": [r["bench"] for r in runs]}


def markdown(r: dict) -> str:
    m = r["modes"]
    lines = [
        "# Incremental transform: a 7-span window sharing 6 spans with yesterday's", "",
        f"{r['when']}, {r['machine']['cpus']} CPUs, Python {r['machine']['python']}; load average "
        f"{r['machine']['load_before']} before, {r['machine']['load_after']} after (other "
        "engineers' jobs share the machine: CPU seconds are the steadier measure). Adult, 8 "
        f"daily spans of about {r['rows_per_span']} train rows; two 7-span window snapshots "
        "(yesterday's, today's) as `pipelines run` ingests them; "
        f"{r['repeats']} run(s) per mode, each a fresh interpreter and home "
        "(`python benchmarks/bench_transform_incremental.py`).", "",
        "| mode | analysis | wall s (min / median) | CPU s (min / median) | load 1m at runs |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("full", "before: all 7 spans as one dataset, no cache"),
                        ("cold", "cache on, empty: 7 spans analyzed, 7 entries written"),
                        ("incremental", "6 spans from cache, 1 analyzed")):
        s = m[name]
        lines.append(f"| {name} | {label} | {s['step_s_min']} / {s['step_s_median']} | "
                     f"{s['cpu_s_min']} / {s['cpu_s_median']} | "
                     f"{', '.join(str(x['load_1m']) for x in s['runs'])} |")
    lines += [
        "", "| measure | result | target | met |", "|---|---|---|---|",
        f"| incremental / full, wall (medians) | {r['ratio_wall']:.2f} | <= {TARGET_RATIO} | "
        f"{r['ratio_wall'] <= TARGET_RATIO} |",
        f"| incremental / full, CPU (medians) | {r['ratio_cpu']:.2f} | <= {TARGET_RATIO} | "
        f"{r['ratio_cpu'] <= TARGET_RATIO} |",
        f"| cold (cache written) / full, CPU | {r['ratio_cold_cpu']:.2f} | | |",
        f"| incremental output equals full (data files' sha256) | {r['identical']} | True | "
        f"{r['identical']} |", "",
        "Cache use of the incremental run (transform.json `analysis`): "
        + ", ".join(f"{p['span']}: {p['cache']}" for p in r["incremental_analysis"]), "",
        r.get("notes", ""), "",
        "## cProfile of the incremental run (cumulative, top 30)", "", "```",
        r["profile"]["cumulative"].strip(), "```", "",
        "## cProfile of the incremental run (own time, top 30)", "", "```",
        r["profile"]["tottime"].strip(), "```", "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--notes", type=Path, default=None,
                        help="a markdown file whose text goes under the tables")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        root = Path(tmp)
        window_a, window_b = setup(root / "setup")
        modes: dict[str, list[dict]] = {"full": [], "cold": [], "incremental": []}
        last: dict[str, dict] = {}
        for rep in range(args.repeats):
            home = root / f"full{rep}"
            last["full"] = child(home, window_b, cache=False)
            modes["full"].append(last["full"])
            home = root / f"inc{rep}"
            last["cold"] = child(home, window_a, cache=True)
            modes["cold"].append(last["cold"])
            last["incremental"] = child(home, window_b, cache=True)
            modes["incremental"].append(last["incremental"])
            shutil.rmtree(root / f"full{rep}")
        assert [p["cache"] for p in last["incremental"]["analysis"]] == ["hit"] * 6 + ["miss"]
        shutil.rmtree(root / "inc0" / "transforms")  # the cache stays: profile the same run
        profiled = child(root / "inc0", window_b, cache=True, mode="profile")
        rows = [p["rows"] for p in last["cold"]["analysis"]]
    s = {k: summary(v) for k, v in modes.items()}
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": round(load_before, 2),
                    "load_after": round(os.getloadavg()[0], 2)},
        "repeats": args.repeats, "rows_per_span": round(sum(rows) / len(rows)),
        "modes": s,
        "ratio_wall": s["incremental"]["step_s_median"] / s["full"]["step_s_median"],
        "ratio_cpu": s["incremental"]["cpu_s_median"] / s["full"]["cpu_s_median"],
        "ratio_cold_cpu": s["cold"]["cpu_s_median"] / s["full"]["cpu_s_median"],
        "identical": ([o["sha256"] for o in last["incremental"]["outputs"][1:]]
                      == [o["sha256"] for o in last["full"]["outputs"][1:]]),
        "incremental_analysis": last["incremental"]["analysis"],
        "profile": profiled["profile"],
        "target_ratio": TARGET_RATIO,
        "notes": args.notes.read_text() if args.notes else "",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transform_incremental.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "transform_incremental.md").write_text(markdown(result))
    print(markdown(result).split("## cProfile")[0])


if __name__ == "__main__":
    main()
