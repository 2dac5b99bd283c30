"""Benchmark: a step whose inputs are unchanged, as its own `pipelines <step>` process (issue 11
item 4: "returns in under a second").

Run by hand: `.venv/bin/python benchmarks/bench_reuse.py [--home DIR] [--repeat 3]`. Without
``--home`` the Adult demo spans are staged in a fresh store under /tmp and ingest, validate,
transform and train run once (the first run, not timed here); with ``--home`` an existing chain is
reused. Then each of the four steps runs ``--repeat`` more times with unchanged inputs, each in a
fresh process: CPU seconds (user + system of the child and its children, from ``os.wait4``: the
git calls of the code version count), wall seconds, peak RSS, the load average, and the
step's last output line (``existing ...`` when the artifact was reused). Prints one JSON document; results are recorded by hand in
benchmarks/results/reuse.md (with the load average: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = str(Path(sys.executable).with_name("pipelines"))
CONFIG = "configs/adult.yaml"
STEPS = ("ingest", "validate", "transform", "train")


def run(args: list[str], env: dict[str, str]) -> dict:
    load = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen([PIPELINES, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    return {"rc": proc.returncode, "wall_s": round(wall, 3), "load": [round(x, 2) for x in load],
            "out": out.strip().splitlines()[-1][:160] if out.strip() else err[-300:]}


def timed(args: list[str], env: dict[str, str]) -> dict:
    """One process with its own rusage (os.wait4 on the child)."""
    load = os.getloadavg()
    start = time.perf_counter()
    with open(os.devnull, "w") as devnull, tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([PIPELINES, *args], cwd=ROOT, env=env, stdout=out,
                                stderr=devnull, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().strip()
    return {"rc": proc.returncode, "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "wall_s": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "load": [round(x, 2) for x in load],
            "out": text.splitlines()[-1][:120] if text else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="an artifact store holding the Adult chain")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-reuse-"))
    env["PIPELINES_HOME"] = str(home)
    first = {}
    if args.home is None:
        first["demo-data"] = run(["demo-data", CONFIG, "--end", "2026-11-20"], env)
        for step in STEPS:
            first[step] = timed([step, CONFIG], env)
    again = {step: [timed([step, CONFIG], env) for _ in range(args.repeat)] for step in STEPS}
    print(json.dumps({"home": str(home), "first": first, "again": again}, indent=1))


if __name__ == "__main__":
    main()
