"""Infra check before a push: load the SavedModel in a fresh process and serve real examples.

Called by :mod:`pipelines.promote` through :func:`check` (which starts ``python -m
pipelines.infra_check`` as a subprocess, so nothing of the training or evaluation process, its
imports or its graph, can mask a model that does not load on its own). The child prints one JSON
document; any failure, crash or timeout means no push.

The check knows the task (the child cannot read the config, so the caller passes it) and checks
``serving_default``'s outputs as the model contract (pipelines/train.py) states them:

    binary      probabilities float [n, 1] in [0, 1]
    multiclass  probabilities float [n, K] in [0, 1], each row summing to 1 (within 1e-4);
                class_ids int [n] in [0, K); classes string [n], one of ``classes`` when given
    regression  predictions float [n, 1], all finite

``n`` comes from the caller (``cfg.promotion.infra_check_examples``). When the examples hold
fewer rows, the check serves what there is and says so in ``notes``; zero rows fail it.
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


OUTPUTS = {"binary": ("probabilities",), "multiclass": ("probabilities", "class_ids", "classes"),
           "regression": ("predictions",)}


def check(model_dir: str | Path, examples_pattern: str, n: int = 100, *, task: str = "binary",
          classes: list[Any] | None = None, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Runs the check in a fresh Python process; returns its record (``passed`` and details).

    Args:
        model_dir: the SavedModel folder.
        examples_pattern: TFRecord glob of serialized raw tf.Examples (golden or eval split).
        n: examples to serve (``cfg.promotion.infra_check_examples``); fewer available is a note.
        task: ``cfg.task``; decides the outputs checked.
        classes: ``cfg.label.classes`` (multiclass: K and the names ``classes`` may hold).
    """
    if task not in OUTPUTS:
        raise ValueError(f"unknown task {task!r} (accepted: {', '.join(OUTPUTS)})")
    cmd = [sys.executable, "-m", "pipelines.infra_check", "--model", str(model_dir),
           "--examples", examples_pattern, "--n", str(n), "--task", task]
    if classes:
        cmd += ["--classes", json.dumps([str(c) for c in classes])]
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


def _check_outputs(outputs: dict[str, Any], task: str, rows: int,
                   classes: list[str] | None) -> list[str]:
    """Reasons the outputs break the model contract of ``task`` (empty: they keep it)."""
    import numpy as np

    reasons = []
    expected = OUTPUTS[task]
    if sorted(outputs) != sorted(expected):
        return [f"serving_default returns {sorted(outputs)}; task {task} expects "
                f"{sorted(expected)}"]
    values = {k: v.numpy() for k, v in outputs.items()}
    main = values[expected[0]]
    k = len(classes) if task == "multiclass" and classes else None
    width = k if task == "multiclass" else 1
    if main.ndim != 2 or main.shape[0] != rows or (width and main.shape[1] != width):
        want = f"({rows}, {width or 'K'})"
        reasons.append(f"output {expected[0]!r} has shape {main.shape}; expected {want}")
        return reasons
    bad = int((~np.isfinite(main)).sum())
    if bad:
        reasons.append(f"output {expected[0]!r} holds {bad} non-finite values")
        return reasons
    if task in ("binary", "multiclass") and (main.min() < 0 or main.max() > 1):
        reasons.append(f"output 'probabilities' leaves [0, 1]: min {main.min()}, max {main.max()}")
    if task == "multiclass":
        sums = main.sum(axis=1)
        worst = float(np.abs(sums - 1).max()) if sums.size else 0.0
        if worst > 1e-4:
            reasons.append(f"output 'probabilities' rows do not sum to 1 (worst off by {worst:.2e})")
        ids, names = values["class_ids"], values["classes"]
        if ids.shape != (rows,) or names.shape != (rows,):
            reasons.append(f"class_ids {ids.shape} and classes {names.shape} must both be ({rows},)")
        elif not np.array_equal(ids, main.argmax(axis=1)):
            reasons.append("class_ids is not the argmax of probabilities")
        elif classes:
            seen = {b.decode() if isinstance(b, bytes) else str(b) for b in names.tolist()}
            unknown = sorted(seen - set(classes))
            if unknown:
                reasons.append(f"classes holds {unknown}, not among {classes}")
    return reasons


def run(model_dir: str, pattern: str, n: int, task: str = "binary",
        classes: list[str] | None = None) -> dict[str, Any]:
    """The child's work: load, serve ``n`` examples as one batch and one by one, check outputs."""
    import numpy as np
    import tensorflow as tf

    notes: list[str] = []
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(model_dir)
    load_s = time.perf_counter() - t0
    if "serving_default" not in loaded.signatures:
        return {"passed": False, "reasons": ["SavedModel has no `serving_default` signature"]}
    serve = loaded.signatures["serving_default"]
    examples = _serialized_examples(pattern, n)
    if not examples:
        return {"passed": False, "model_dir": model_dir, "examples": 0, "task": task,
                "reasons": [f"no examples in {pattern} to serve"]}
    if len(examples) < n:
        notes.append(f"served all {len(examples)} examples available, fewer than the {n} asked")
    t0 = time.perf_counter()
    outputs = serve(examples=tf.constant(examples))
    first_ms = (time.perf_counter() - t0) * 1000
    reasons = _check_outputs(outputs, task, len(examples), classes)
    key = OUTPUTS[task][0]
    main = outputs[key].numpy() if key in outputs else np.zeros(0)
    t0 = time.perf_counter()
    serve(examples=tf.constant(examples))
    batch_ms = (time.perf_counter() - t0) * 1000
    singles = []
    for ex in examples[:20]:
        t0 = time.perf_counter()
        serve(examples=tf.constant([ex]))
        singles.append((time.perf_counter() - t0) * 1000)
    finite = main[np.isfinite(main)] if main.size else main
    value_range = [float(finite.min()), float(finite.max())] if finite.size else None
    return {
        "passed": not reasons, "reasons": reasons, "notes": notes, "model_dir": model_dir,
        "task": task, "examples": len(examples), "examples_asked": n,
        "output": key, "outputs": sorted(outputs),
        "output_shapes": {k: list(v.shape) for k, v in outputs.items()},
        "output_shape": list(main.shape),
        "output_range": value_range,
        "probability_range": value_range if task != "regression" else None,
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
    parser.add_argument("--task", choices=sorted(OUTPUTS), default="binary")
    parser.add_argument("--classes", default=None, help="JSON list of the class names")
    args = parser.parse_args(argv)
    try:
        if args.n < 1:
            raise ValueError(f"--n must be at least 1, got {args.n}")
        classes = json.loads(args.classes) if args.classes else None
        record = run(args.model, args.examples, args.n, args.task, classes)
    except Exception as exc:  # noqa: BLE001 - any failure is a failed check, reported as JSON
        record = {"passed": False, "reasons": [f"{type(exc).__name__}: {exc}"[:2000]],
                  "model_dir": args.model}
    print(json.dumps(record, default=str))
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
