"""Infra check before a push: load the SavedModel in a fresh process and serve real examples.

Called by :mod:`pipelines.promote` through :func:`check` (which starts ``python -m
pipelines.infra_check`` as a subprocess, so nothing of the training or evaluation process, its
imports or its graph, can mask a model that does not load on its own). The child prints one JSON
document; any failure, crash or timeout means no push.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.config import REPO_ROOT

TIMEOUT_S = 300


def check(model_dir: str | Path, examples_pattern: str, n: int = 100,
          timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Runs the check in a fresh Python process; returns its record (``passed`` and details)."""
    cmd = [sys.executable, "-m", "pipelines.infra_check", "--model", str(model_dir),
           "--examples", examples_pattern, "--n", str(n)]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired:
        return {"passed": False, "reasons": [f"infra check timed out after {timeout:.0f} s"],
                "model_dir": str(model_dir)}
    wall = round(time.perf_counter() - start, 3)
    try:
        record = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"passed": False, "model_dir": str(model_dir), "process_seconds": wall,
                "reasons": [f"infra check process exited {proc.returncode} without a result: "
                            f"{tail}"]}
    record.update(process_seconds=wall, exit_code=proc.returncode, pid_fresh=True)
    return record


def _serialized_examples(pattern: str, n: int) -> list[bytes]:
    import tensorflow as tf

    files = sorted(glob.glob(pattern))
    if not files:
        raise ValueError(f"no TFRecord files match {pattern}")
    return [r.numpy() for r in tf.data.TFRecordDataset(files).take(n)]


def run(model_dir: str, pattern: str, n: int) -> dict[str, Any]:
    """The child's work: load, serve ``n`` examples as one batch and one by one, check outputs."""
    import numpy as np
    import tensorflow as tf

    reasons: list[str] = []
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(model_dir)
    load_s = time.perf_counter() - t0
    if "serving_default" not in loaded.signatures:
        return {"passed": False, "reasons": ["SavedModel has no `serving_default` signature"]}
    serve = loaded.signatures["serving_default"]
    examples = _serialized_examples(pattern, n)
    if len(examples) < n:
        reasons.append(f"only {len(examples)} examples available, {n} required")
    t0 = time.perf_counter()
    outputs = serve(examples=tf.constant(examples))
    first_ms = (time.perf_counter() - t0) * 1000
    if len(outputs) != 1:
        reasons.append(f"serving_default returns {sorted(outputs)}; expected one output")
    name, tensor = next(iter(outputs.items()))
    probs = tensor.numpy()
    if probs.shape not in ((len(examples),), (len(examples), 1)):
        reasons.append(f"output {name!r} has shape {probs.shape}; expected ({len(examples)}, 1)")
    if not np.all(np.isfinite(probs)):
        reasons.append(f"output {name!r} holds {int((~np.isfinite(probs)).sum())} non-finite values")
    elif probs.min() < 0 or probs.max() > 1:
        reasons.append(f"output {name!r} leaves [0, 1]: min {probs.min()}, max {probs.max()}")
    t0 = time.perf_counter()
    serve(examples=tf.constant(examples))
    batch_ms = (time.perf_counter() - t0) * 1000
    singles = []
    for ex in examples[:20]:
        t0 = time.perf_counter()
        serve(examples=tf.constant([ex]))
        singles.append((time.perf_counter() - t0) * 1000)
    return {
        "passed": not reasons, "reasons": reasons, "model_dir": model_dir, "examples": len(examples),
        "output": name, "output_shape": list(probs.shape),
        "probability_range": [float(probs.min()), float(probs.max())] if probs.size else None,
        "load_seconds": round(load_s, 3),
        "latency_ms": {"first_batch": round(first_ms, 2), f"batch_of_{len(examples)}": round(batch_ms, 2),
                       "single_p50": round(float(np.percentile(singles, 50)), 3),
                       "single_p95": round(float(np.percentile(singles, 95)), 3)},
        "pid": os.getpid(), "tensorflow": tf.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--examples", required=True, help="TFRecord pattern of raw tf.Example")
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        record = run(args.model, args.examples, args.n)
    except Exception as exc:  # noqa: BLE001 - any failure is a failed check, reported as JSON
        record = {"passed": False, "reasons": [f"{type(exc).__name__}: {exc}"[:2000]],
                  "model_dir": args.model}
    print(json.dumps(record, default=str))
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
