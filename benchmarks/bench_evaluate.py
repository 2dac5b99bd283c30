"""Benchmark of the `evaluate` step: candidate and production baseline, eval split and golden set,
every slicing spec, in one fresh process (imports included), on the real Adult data.

Run by `make bench` (python benchmarks/bench_evaluate.py [--no-profile]). Builds its own chain in
a temporary home (ingest, validate, transform, two trained models, the first pushed as
production), then times ``pipelines.evaluate.evaluate`` in a child process: wall time, CPU time and
peak memory (``RUSAGE_CHILDREN.ru_maxrss``). With the profile on (default) it runs the step once
more under cProfile and records where the time goes. Writes benchmarks/results/evaluate.json and
evaluate.md. Target on the 2-core machine (issue 11): the whole step under 15 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = REPO / "benchmarks" / "results"
TARGET_S = 15.0  # issue 11: evaluate <= 15 s with baseline
STEP = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from pipelines.context import RunContext
from pipelines.config import load_config
from pipelines.evaluate import evaluate
cfg = load_config(sys.argv[1])
r = evaluate(cfg, Path(sys.argv[2]), RunContext(run_id="bench"), model_uri=sys.argv[3],
             snapshot_uris=[sys.argv[4]], golden_uri=sys.argv[5])
print(json.dumps({"in_process_s": time.perf_counter() - t0, "tfma_s": r["tfma_seconds"],
                  "blessed": r["blessed"], "baseline": r["baseline"],
                  "rows": {k: v["candidate"]["example_count"] for k, v in r["metrics"].items()}}))
"""


def build_chain(home: Path) -> dict:
    """Snapshot, golden set, transform, two models; the first one is pushed as production."""
    from pipelines import registry
    from pipelines.config import load_config
    from pipelines.context import RunContext
    from pipelines.ingest import ingest
    from pipelines.sample_data import stage_sample_data
    from pipelines.train import train
    from pipelines.transform import transform
    from pipelines.validate import validate

    cfg = load_config(REPO / "configs" / "adult.yaml")
    ctx = RunContext(run_id="bench", triggered_by="test")
    end = dt.date(2026, 11, 20)
    stage_sample_data(cfg, home, end, days=7, from_dir=REPO.parent / "shared" / "data" / "adult" / "raw")
    snap = ingest(cfg, home, ctx, span=end, window=7)
    validate(cfg, home, ctx, snapshot_uri=snap["uri"])
    golden = ingest(cfg, home, ctx, golden=True)
    tr = transform(cfg, home, ctx, snapshot_uris=[snap["uri"]])
    prod = train(cfg, home, ctx, transform_uri=tr["transform_uri"])
    other = cfg.model_copy(update={"model": cfg.model.model_copy(update={"seed": 7})})
    cand = train(other, home, ctx, transform_uri=tr["transform_uri"])
    registry.push(cfg, home, ctx, prod["model_uri"], None, {"by": "bench"})
    return {"snapshot": snap["uri"], "golden": golden["uri"], "candidate": cand["model_uri"]}


def existing_chain(home: Path) -> dict:
    """The chain of a home that already holds an evaluation (e.g. bench_gate_flips's): its
    snapshot, golden set and candidate; the model in production stays the baseline."""
    import glob

    records = sorted(glob.glob(str(home / "evaluations" / "adult" / "*" / "evaluation.json")))
    if not records:
        raise SystemExit(f"--home {home}: no evaluations/adult/*/evaluation.json to take the chain "
                         "from")
    rec = json.loads(Path(records[0]).read_text())
    transforms = sorted(glob.glob(str(home / "transforms" / "adult" / "*")))

    def here(uri: str) -> str:  # the record's paths, moved to this home (a copied home)
        for part in ("/snapshots/", "/models/"):
            if part in uri:
                return str(home) + part + uri.split(part, 1)[1]
        return uri

    return {"snapshot": here(rec["data"]["eval"][0]["uri"]),
            "golden": here(rec["data"]["golden"]["uri"]), "candidate": here(rec["model"]["uri"]),
            "transform": transforms[0] if transforms else None}


def train_here(home: Path, chain: dict) -> None:
    """Trains one model in this process (the TensorFlow heap `pipelines run` has at evaluate)."""
    from pipelines.config import load_config
    from pipelines.context import RunContext
    from pipelines.train import train

    cfg = load_config(REPO / "configs" / "adult.yaml")
    train(cfg, home, RunContext(run_id="bench", triggered_by="test"),
          transform_uri=chain["transform"])


def run_step(home: Path, chain: dict, profile: Path | None = None,
             code: Path = REPO) -> dict:
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    script = home / "step.py"
    script.write_text(STEP)
    cmd += [str(script), str(REPO / "configs" / "adult.yaml"), str(home), chain["candidate"],
            chain["snapshot"], chain["golden"]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=str(REPO),
                         env={**os.environ, "PYTHONPATH": str(code)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record.update(wall_s=round(wall, 1), loadavg=round(os.getloadavg()[0], 2),
                  cpu_s=round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
                  peak_rss_mib=round(after.ru_maxrss / 1024, 1),
                  in_process_s=round(record["in_process_s"], 1))
    return record


def in_process(home: Path, chain: dict, freeze: bool) -> dict:
    """The step in this process, after build_chain trained two models in it (as `pipelines run`
    does): wall and CPU (all threads). ``freeze=False`` turns the step's gc.freeze() off (the
    code before it), to measure what the collector costs over TensorFlow's heap."""
    import gc

    from pipelines.config import load_config
    from pipelines.context import RunContext
    from pipelines.evaluate import evaluate

    saved = gc.freeze, gc.unfreeze
    if not freeze:
        gc.freeze = gc.unfreeze = lambda: None  # type: ignore[assignment]
    try:
        cfg = load_config(REPO / "configs" / "adult.yaml")
        load = os.getloadavg()[0]
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        r = evaluate(cfg, home, RunContext(run_id="bench"), model_uri=chain["candidate"],
                     snapshot_uris=[chain["snapshot"]], golden_uri=chain["golden"])
        r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    finally:
        gc.freeze, gc.unfreeze = saved
    return {"gc_freeze": freeze, "wall_s": round(wall, 1), "tfma_s": r["tfma_seconds"],
            "cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1),
            "loadavg": round(load, 2), "gc_objects": len(gc.get_objects())}


def top_functions(profile: Path, n: int = 12) -> list[dict]:
    stats = pstats.Stats(str(profile))
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{"function": f"{Path(f).name}:{line}({name})", "calls": nc, "tottime_s": round(tt, 1)}
            for (f, line, name), (_, nc, tt, _, _) in rows]


def write(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "evaluate.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    s = results["step"]
    lines = ["# Evaluate benchmark (benchmarks/bench_evaluate.py)", "",
             f"{results['machine']}; measured {results['measured_at']}; load average before "
             f"the run {results['loadavg']}.", "",
             "| what | wall | CPU | target | peak memory |", "|---|---|---|---|---|",
             f"| evaluate step, fresh process: candidate + production baseline, eval split "
             f"({s['rows'].get('eval'):.0f} rows) + golden set ({s['rows'].get('golden'):.0f} rows), "
             f"5 slicing specs | {s['wall_s']} s | {s['cpu_s']} s | < {TARGET_S} s | "
             f"{s['peak_rss_mib']} MiB |",
             f"| of which the TFMA Beam pipeline | {s['tfma_s']} s | | | |",
             f"| before (model's compiled Keras metrics still evaluated): {BEFORE['what']} | "
             f"{BEFORE['wall_s']} s | {BEFORE['cpu_s']} s | | {BEFORE['peak_rss_mib']} MiB |", ""]
    if "alternating" in results:
        lines += ["Before/after in the same conditions (`--before-code`: the `pipelines` package of "
                  "the previous commit, its runs alternating with this tree's on the same chain; "
                  "the machine is shared, so compare pairs, not absolute times):", "",
                  "| round | before wall | before CPU | after wall | after CPU | load (1 min) |",
                  "|---|---|---|---|---|---|"]
        for i, (b, a) in enumerate(zip(results["alternating"]["before"],
                                       results["alternating"]["after"], strict=True), 1):
            lines.append(f"| {i} | {b['wall_s']} s | {b['cpu_s']} s | {a['wall_s']} s | "
                         f"{a['cpu_s']} s | {b['loadavg']} / {a['loadavg']} |")
        lines.append("")
    if "in_process" in results:
        lines += ["Inside one long-lived process, after training in it (as `pipelines "
                  "run`), gc.freeze() around the TFMA run off (before) and on (after), "
                  "alternating; CPU of all threads:", "",
                  "| gc.freeze | wall | CPU | TFMA | load (1 min) | live objects after |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {'on' if r['gc_freeze'] else 'off'} | {r['wall_s']} s | {r['cpu_s']} s | "
                  f"{r['tfma_s']} s | {r['loadavg']} | {r['gc_objects']} |"
                  for r in results["in_process"]]
        lines.append("")
    if "profile_top_tottime" in results:
        lines += ["Where the time goes (cProfile of the same step, top functions by own time):", "",
                  "| function | calls | own time |", "|---|---|---|"]
        lines += [f"| `{r['function']}` | {r['calls']} | {r['tottime_s']} s |"
                  for r in results["profile_top_tottime"]]
    lines += ["", results["note"]]
    (RESULTS / "evaluate.md").write_text("\n".join(lines) + "\n")


# Same step, same chain, before eval_tfma switched off TFMA's default (compiled Keras) metrics;
# measured 2026-11-22 23:47 UTC at load average 1.1 (the earlier record, at load 4.6: 160.1 s
# wall, 89.9 s CPU).
BEFORE = {"what": "2026-11-22 23:47 UTC, load 1.1", "wall_s": 89.7, "cpu_s": 89.4,
          "peak_rss_mib": 1611.3}
NOTE = ("Binary metrics come from one fused combiner (pipelines.tfma_metrics.BinaryStats) with "
        "95% Poisson-bootstrap intervals in the same pass (100 replicates, weights from a hash of "
        "each example). Since 2026-11-23 22:00 UTC the evaluate step runs it on TFMA's batched "
        "extracts (issue 11 item 1): TFMA's extractors read, parse and predict per record batch; "
        "a batched slice-key extractor finds every slice's rows with numpy over the batch's Arrow "
        "columns and a batched evaluator feeds BinaryStats.add_batch per (batch, slice), then "
        "TFMA's own diff metrics, validation and writers (same output files; "
        "tests/eval/test_fused_metrics.py compares every metric, interval, diff and plot with "
        "TFMA's per-example path). TFMA's per-example stages are gone from the profile: "
        "FanoutSlices / generate_slices (228k calls before), to_tensor_value (547k), "
        "add_to_results, StandardMetricInputs, one add_input per (example, slice) (114k). The "
        "models are also loaded once each, as generic SavedModels (TFMA's type detection loaded "
        "each as Keras a second time). Before/after above: the same working tree with "
        "eval_tfma.py and tfma_metrics.py of the previous commit (fresh process, alternating, "
        "load 15-16): 30.1 -> 17.4 s CPU; a quieter pair at load 7-10 (21:33 and 21:49 UTC): 36.9 -> "
        "17.2 s CPU. Inside one long-lived process after training (as `pipelines run`): 10.4 s CPU "
        "with gc.freeze (13.4 s without), was 20.6 s (26.4 s without): the in-process target "
        "(<= 15 s) is met. The fresh-process step stays above 15 s because of imports: importing "
        "TensorFlow, Beam, TFMA and the step's modules alone costs 7.8 s CPU (measured apart, load "
        "13); with the two SavedModel loads that is most of what remains "
        "(profile above: marshal.loads, create_dynamic, compile, __build_class__ and inspect are "
        "import and SavedModel-function restoration; TFE_Py_Execute is the models' inference, "
        "4.7 s own time over 178 calls under cProfile). Smaller items left: TFMA calls each "
        "serving signature positionally, which fails the structured binding first and formats "
        "the whole batch of serialized examples into the error message (ops.py numpy_text, "
        "~2 s under cProfile, 112 calls) before the flat call succeeds; Beam runs 33 bundles. "
        "Wall times are 4-7x the CPU times (load average 7-19 from other engineers' runs and "
        "the lead's test suite): compare CPU. Multiclass and regression still run TFMA's "
        "per-example path (their configs use TFMA's ExampleCount, which has no batched form).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--before-code", type=Path, help="a folder holding the `pipelines` "
                        "package of the code before a change (git archive <rev> pipelines): "
                        "its step runs alternate with this tree's, in the same conditions")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--home", type=Path, help="reuse the chain of this home (one that holds "
                        "an evaluation, e.g. a copy of bench_gate_flips's) instead of building one")
    parser.add_argument("--before-profile", action="store_true",
                        help="also profile the --before-code step")
    parser.add_argument("--no-in-process", action="store_true",
                        help="skip the step inside this process after training")
    args = parser.parse_args()
    results = {"machine": f"{platform.node()} {os.cpu_count()} CPUs, Python "
                          f"{platform.python_version()}",
               "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "target_s": TARGET_S, "note": NOTE}
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        home = args.home or Path(tmp)
        chain = existing_chain(home) if args.home else build_chain(home)
        results["loadavg"] = os.getloadavg()[0]
        if args.before_code:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for _ in range(args.rounds):  # alternate: both see the same load
                runs["before"].append(run_step(home, chain, code=args.before_code))
                runs["after"].append(run_step(home, chain))
            results["alternating"] = runs
            if args.before_profile:
                prof = home / "before.prof"
                run_step(home, chain, profile=prof, code=args.before_code)
                results["before_profile_top_tottime"] = top_functions(prof)
        if not args.no_in_process:  # long-lived process: gc.freeze off, then on (alternating)
            if args.home:
                train_here(home, chain)
            results["in_process"] = [in_process(home, chain, freeze)
                                     for _ in range(args.rounds) for freeze in (False, True)]
        results["step"] = run_step(home, chain)
        results["target_met"] = results["step"]["wall_s"] < TARGET_S
        if not args.no_profile:
            prof = home / "evaluate.prof"
            run_step(home, chain, profile=prof)
            results["profile_top_tottime"] = top_functions(prof)
    write(results)
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
