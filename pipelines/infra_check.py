"""Infra check before a push: load the SavedModel in a fresh process and serve real examples.

Called by :mod:`pipelines.promote` through :func:`check` (which starts ``python -m
pipelines.infra_check`` as a subprocess, so nothing of the training or evaluation process, its
imports or its graph, can mask a model that does not load on its own). Evaluate starts the same
check on the trained model while TFMA runs (:func:`prestart`) and keeps a blessed model's result
(:func:`keep`); promote's :func:`check` of a copy with the same bytes takes it instead. The child
prints one JSON document; any failure, crash or timeout means no push.

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
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.config import REPO_ROOT, PipelineConfig

TIMEOUT_S = 300
log = logging.getLogger(__name__)


OUTPUTS = {"binary": ("probabilities",), "multiclass": ("probabilities", "class_ids", "classes"),
           "regression": ("predictions",)}


def examples_pattern(cfg: PipelineConfig, golden_uri: str | None, eval_uri: str) -> str:
    """The check's examples: the configured source, the golden set falling back to eval (the
    snapshot URIs as the evaluation record holds them: resolved paths)."""
    from pipelines.snapshots import GOLDEN_SPLIT, split_pattern

    if cfg.promotion.infra_check_source == "golden" and golden_uri:
        return split_pattern(golden_uri, GOLDEN_SPLIT)
    return split_pattern(eval_uri, "eval")


class Child:
    """One running check: the fresh ``python -m pipelines.infra_check`` process and its output.

    Its output goes to temporary files, not pipes, so a child that logs a lot never blocks on a
    full pipe while nobody reads it (a prestarted child runs unattended during evaluate)."""

    def __init__(self, model_dir: str | Path, examples_pattern: str, n: int, task: str,
                 classes: list[Any] | None, timeout: float, sha256: str | None = None):
        import tempfile

        if task not in OUTPUTS:
            raise ValueError(f"unknown task {task!r} (accepted: {', '.join(OUTPUTS)})")
        cmd = [sys.executable, "-m", "pipelines.infra_check", "--model", str(model_dir),
               "--examples", examples_pattern, "--n", str(n), "--task", task]
        if classes:
            cmd += ["--classes", json.dumps([str(c) for c in classes])]
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        self.model_dir, self.timeout = str(model_dir), timeout
        # what a kept result is filed under (:func:`keep`): the bytes served and the arguments
        self.sha256, self.args = sha256, (examples_pattern, n, task, classes)
        self._out, self._err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, env=env,
                                     cwd=str(REPO_ROOT))

    def result(self) -> dict[str, Any]:
        """Waits for the child (at most ``timeout`` from its start); its record."""
        try:
            self.proc.wait(timeout=max(0.0, self.timeout - (time.perf_counter() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            return {"passed": False, "model_dir": self.model_dir,
                    "reasons": [f"infra check timed out after {self.timeout:.0f} s"]}
        wall = round(time.perf_counter() - self.started, 3)
        out, err = (self._read(f) for f in (self._out, self._err))
        try:
            record = json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            tail = "\n".join(err.strip().splitlines()[-5:])
            return {"passed": False, "model_dir": self.model_dir, "process_seconds": wall,
                    "reasons": [f"infra check process exited {self.proc.returncode} without a "
                                f"result: {tail}"]}
        record.update(process_seconds=wall, exit_code=self.proc.returncode, pid_fresh=True)
        return record

    def stop(self) -> None:
        """Kills the child if it still runs, and reaps it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._out.close()
        self._err.close()

    @staticmethod
    def _read(f) -> str:
        f.seek(0)
        text = f.read()
        f.close()
        return text


# A check started ahead of promote (during evaluate, :func:`prestart`) and kept (:func:`keep`) may
# stand for promote's own for this long: an older result (a run waiting for approval) is redone.
KEPT_FOR_S = 3600


def _key(sha256: str, examples_pattern: str, n: int, task: str,
         classes: list[Any] | None) -> str:
    """The file name a kept check goes under: a hash of the SavedModel's bytes and the arguments."""
    import hashlib

    doc = json.dumps([sha256, examples_pattern, n, task, [str(c) for c in classes or ()]])
    return hashlib.sha256(doc.encode()).hexdigest()[:32] + ".json"


def prestart(model_dir: str | Path, examples_pattern: str, n: int = 100, *, task: str = "binary",
             classes: list[Any] | None = None, timeout: float = TIMEOUT_S) -> Child:
    """Starts the check of ``model_dir`` now, so that the machine's second core serves the model
    while the caller goes on (evaluate). Hand the child to :func:`keep` (or ``stop`` it)."""
    from pipelines.hashing import sha256_tree

    child = Child(model_dir, examples_pattern, n, task, classes, timeout,
                  sha256=sha256_tree(Path(model_dir)))
    log.info("infra check of %s started ahead of promote (pid %d)", model_dir, child.proc.pid)
    return child


def keep(child: Child, folder: Path) -> Path | None:
    """Waits for a :func:`prestart`-ed check and keeps its record in ``folder`` for promote's
    :func:`check` of the same bytes. Not kept (None) if the model's bytes changed meanwhile or the
    record cannot be written: it was only a head start, and promote then checks itself."""
    from pipelines.hashing import sha256_tree
    from pipelines.store import write_json_atomic

    try:
        record = child.result()
        if child.sha256 is None or sha256_tree(Path(child.model_dir)) != child.sha256:
            log.warning("infra check of %s not kept: the model changed while it ran",
                        child.model_dir)
            return None
        for old in folder.glob("*.json"):  # results nobody took (a run not promoted after all)
            if time.time() - old.stat().st_mtime > KEPT_FOR_S:
                old.unlink(missing_ok=True)
        target = folder / _key(child.sha256, *child.args)
        write_json_atomic(target, {"sha256": child.sha256, "model_dir": child.model_dir,
                                   "record": record, "kept_at": time.time()})
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("infra check of %s not kept (%s: %s); promote runs it", child.model_dir,
                    type(exc).__name__, exc)
        return None
    finally:
        child.stop()  # reaped whatever happened (a no-op once it has exited)
    log.info("infra check of %s %s; kept for promote", child.model_dir,
             "passed" if record.get("passed") else "FAILED")
    return target


def _kept(folder: Path, key: str, sha256: str) -> dict[str, Any] | None:
    """The kept record under ``key`` (taken once: the file is removed), if fresh enough."""
    from pipelines.store import read_json

    target = folder / key
    try:
        doc = read_json(target)
        target.unlink()
        age = time.time() - float(doc["kept_at"])
        record = dict(doc["record"], prestarted=True, kept_at=doc["kept_at"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # not ours, or torn: check anew
        log.warning("kept infra check %s unreadable (%s: %s); checking anew", target,
                    type(exc).__name__, exc)
        return None
    if doc.get("sha256") != sha256 or not 0 <= age <= KEPT_FOR_S:
        log.info("kept infra check of %s not used (%s)", doc.get("model_dir"),
                 "other bytes" if doc.get("sha256") != sha256 else f"{age:.0f} s old")
        return None
    return record


def check(model_dir: str | Path, examples_pattern: str, n: int = 100, *, task: str = "binary",
          classes: list[Any] | None = None, timeout: float = TIMEOUT_S,
          sha256: str | None = None, kept: Path | None = None) -> dict[str, Any]:
    """Runs the check in a fresh Python process; returns its record (``passed`` and details).

    Args:
        model_dir: the SavedModel folder.
        examples_pattern: TFRecord glob of serialized raw tf.Examples (golden or eval split).
        n: examples to serve (``cfg.promotion.infra_check_examples``); fewer available is a note.
        task: ``cfg.task``; decides the outputs checked.
        classes: ``cfg.label.classes`` (multiclass: K and the names ``classes`` may hold).
        sha256: the content hash of ``model_dir``'s SavedModel, when the caller verified it (the
            registry's copy), and ``kept``: the folder of checks kept by :func:`keep`. A check
            of the same bytes with the same arguments kept there within ``KEPT_FOR_S`` is taken
            (once) instead of a new one. Its record names the folder it served (``model_dir``),
            says ``prestarted`` and ``same_sha256_as`` this one.
    """
    if task not in OUTPUTS:
        raise ValueError(f"unknown task {task!r} (accepted: {', '.join(OUTPUTS)})")
    if sha256 and kept is not None:
        record = _kept(kept, _key(sha256, examples_pattern, n, task, classes), sha256)
        if record is not None:
            return dict(record, same_sha256_as=str(model_dir))
    return Child(model_dir, examples_pattern, n, task, classes, timeout).result()


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
