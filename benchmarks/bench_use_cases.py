"""Benchmark of every use case: golden-set quality of the model the pipeline trains, next to a
scikit-learn baseline trained on the same train split, and the wall time of each step.

Run by `make bench` (python benchmarks/bench_use_cases.py [--use-case NAME ...]). For each
configs/<name>.yaml, in a temporary artifact store:

1. `pipelines demo-data configs/<name>.yaml --end 2026-11-20` stages its real sample data;
2. `pipelines run configs/<name>.yaml --span 2026-11-20 --json`, the whole chain in one process,
   exactly what the DAG runs; the wall time of each step is taken from the command's own
   "task X: start" / "X: done" lines (start-up: from launch to the first step);
3. the golden set is scored three ways: the evaluate step's TFMA metrics (as gated and reported),
   the promoted SavedModel's ``serving_default`` scored with scikit-learn's metrics, and a
   HistGradientBoosting baseline (classifier or regressor per task) fitted on the snapshot's
   train split (`pipelines.snapshots.read_frame`), the model's own feature columns only
   (excluded columns left out, as the model sees them), scored with the same metrics.

Baseline encoding, kept simple and the same for every use case: numbers as they are (missing
values as NaN, which the trees handle), strings as pandas categories (missing as NaN; beyond the
250 most frequent train values one shared "other" category), a date string (YYYY-MM-DD or
YYYY/MM/DD) as its day of year. No tuning: scikit-learn's defaults, random_state=0.

Writes benchmarks/results/use_cases.json and use_cases.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = REPO / "benchmarks" / "results"
END = dt.date(2026, 11, 20)
STEPS = ("ingest", "validate", "transform", "train", "evaluate", "promote", "report")
MAX_CATEGORIES = 250
DATE = re.compile(r"^\d{4}[-/]\d{2}[-/]\d{2}$")
# The lines `pipelines run` writes on stderr as a task starts and ends ("12:00:01  train  started",
# "12:00:09  train  success  8.0 s"; older: "task train: start" logged, "train: done").
START_LINE = re.compile(r"^\d\d:\d\d:\d\d\s+(\w+)\s+started\s*$|pipelines\.flow: task (\w+): start")
END_LINE = re.compile(r"^\d\d:\d\d:\d\d\s+(\w+)\s+success\b|^(\w+): done\s*$")
# The metrics compared per task: (key in the evaluate step's metrics, label, higher is better).
METRICS = {
    "binary": [("auc", "AUC", True)],
    "multiclass": [("accuracy", "accuracy", True), ("macro_auc", "macro one-vs-rest AUC", True)],
    "regression": [("rmse", "RMSE", False), ("r2", "R²", True), ("mae", "MAE", False)],
}


def pipelines_cli() -> str:
    exe = Path(sys.executable).parent / "pipelines"
    return str(exe) if exe.exists() else "pipelines"


def run_use_case(name: str, home: Path) -> dict[str, Any]:
    """Stages the sample data, then `pipelines run --json` with per-step wall times."""
    env = {**os.environ, "PIPELINES_HOME": str(home)}
    config = f"configs/{name}.yaml"
    t0 = time.perf_counter()
    subprocess.run([pipelines_cli(), "demo-data", config, "--end", END.isoformat()], env=env,
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=900)
    stage_s = time.perf_counter() - t0

    start = time.perf_counter()
    proc = subprocess.Popen([pipelines_cli(), "run", config, "--span", END.isoformat(), "--json"],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    began: dict[str, float] = {}
    ended: dict[str, float] = {}
    tail: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:  # stdout is one JSON document at the end: no deadlock
        now = time.perf_counter()
        tail = (tail + [line])[-60:]
        if m := START_LINE.search(line):
            began[m.group(1) or m.group(2)] = now
        elif m := END_LINE.search(line):
            ended[m.group(1) or m.group(2)] = now
    stdout = proc.stdout.read()
    rc = proc.wait()
    wall = time.perf_counter() - start
    if rc not in (0, 3):  # 3: completed, not promoted (still scored)
        raise RuntimeError(f"pipelines run {config} exited {rc}:\n{''.join(tail)}")
    steps = {s: round(ended[s] - began[s], 1) for s in STEPS if s in began and s in ended}
    if not steps:
        raise RuntimeError(f"no step times in the output of pipelines run {config}:\n"
                           + "".join(tail))
    return {"exit_code": rc, "result": json.loads(stdout), "stage_s": round(stage_s, 1),
            "run_s": round(wall, 1), "startup_s": round(min(began.values()) - start, 1),
            "steps_s": steps}


def encode(cfg: Any, train: Any, test: Any) -> tuple[Any, Any]:
    """The model's feature columns, encoded simply (see the module doc) for HistGradientBoosting."""
    import numpy as np
    import pandas as pd

    xs: dict[str, dict[str, Any]] = {"train": {}, "test": {}}
    for col in cfg.feature_columns:
        a, b = train[col.name], test[col.name]
        if col.type != "string":
            xs["train"][col.name] = a.to_numpy(dtype="float64", na_value=np.nan)
            xs["test"][col.name] = b.to_numpy(dtype="float64", na_value=np.nan)
            continue
        if a.dropna().map(lambda v: bool(DATE.match(v))).all():
            for key, s in (("train", a), ("test", b)):
                xs[key][col.name] = pd.to_datetime(s.str.replace("/", "-"),
                                                   format="%Y-%m-%d").dt.dayofyear.to_numpy(float)
            continue
        keep = a.value_counts().index[:MAX_CATEGORIES]
        cats = [*keep, "__other__"]
        for key, s in (("train", a), ("test", b)):
            s = s.where(s.isna() | s.isin(keep), "__other__")
            xs[key][col.name] = pd.Categorical(s, categories=cats)
    return pd.DataFrame(xs["train"]), pd.DataFrame(xs["test"])


def labels(cfg: Any, frame: Any) -> Any:
    """The label per task: binary 0/1, multiclass the index in label.classes, regression float."""
    y = frame[cfg.label.column]
    if cfg.task == "binary":
        return (y == cfg.label.positive_class).astype(int).to_numpy()
    if cfg.task == "multiclass":
        index = {c: i for i, c in enumerate(cfg.label.classes)}
        return y.map(index).astype(int).to_numpy()
    return y.astype(float).to_numpy()


def score(task: str, y: Any, pred: Any) -> dict[str, float]:
    """scikit-learn's metrics; ``pred``: P(positive), P(class) [n, K] or the value."""
    import numpy as np
    from sklearn import metrics

    if task == "binary":
        return {"auc": metrics.roc_auc_score(y, pred)}
    if task == "multiclass":
        return {"accuracy": metrics.accuracy_score(y, pred.argmax(axis=1)),
                "macro_auc": metrics.roc_auc_score(y, pred, multi_class="ovr", average="macro",
                                                   labels=list(range(pred.shape[1])))}
    return {"rmse": float(np.sqrt(metrics.mean_squared_error(y, pred))),
            "r2": metrics.r2_score(y, pred), "mae": metrics.mean_absolute_error(y, pred)}


def serving_predictions(cfg: Any, model_uri: str, golden_uri: str) -> Any:
    """The SavedModel's serving_default on the golden set's raw tf.Examples, in file order."""
    import numpy as np
    import tensorflow as tf

    from pipelines.snapshots import GOLDEN_SPLIT

    files = sorted(str(f) for f in (Path(golden_uri) / GOLDEN_SPLIT).glob("data-*.tfrecord"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
    serve = tf.saved_model.load(model_uri).signatures["serving_default"]
    key = "predictions" if cfg.task == "regression" else "probabilities"
    out = np.concatenate([serve(examples=tf.constant(records[i:i + 4096]))[key].numpy()
                          for i in range(0, len(records), 4096)])
    return out if cfg.task == "multiclass" else out[:, 0]


def quality(cfg: Any, done: dict[str, Any]) -> dict[str, Any]:
    """Golden-set metrics: TFMA (evaluate), serving_default + sklearn, HistGradientBoosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from pipelines.snapshots import GOLDEN_SPLIT, read_frame

    snapshot_uri, golden_uri = done["ingest"]["uri"], done["ingest"]["golden_uri"]
    train, test = read_frame(cfg, snapshot_uri, "train"), read_frame(cfg, golden_uri, GOLDEN_SPLIT)
    y_train, y_test = labels(cfg, train), labels(cfg, test)
    x_train, x_test = encode(cfg, train, test)
    model = (HistGradientBoostingRegressor if cfg.task == "regression"
             else HistGradientBoostingClassifier)(categorical_features="from_dtype", random_state=0)
    start = time.perf_counter()
    model.fit(x_train, y_train)
    fit_s = time.perf_counter() - start
    if cfg.task == "regression":
        baseline_pred = model.predict(x_test)
    else:
        proba = model.predict_proba(x_test)
        baseline_pred = proba[:, 1] if cfg.task == "binary" else proba
    tfma = done["evaluate"]["metrics"]["golden"]["candidate"]
    serving = score(cfg.task, y_test, serving_predictions(cfg, done["train"]["model_uri"],
                                                          golden_uri))
    baseline = score(cfg.task, y_test, baseline_pred)
    keys = [k for k, _, _ in METRICS[cfg.task]]
    return {
        "rows": {"train": len(train), "golden": len(test)},
        "features": {"model_inputs": [c.name for c in cfg.feature_columns],
                     "baseline_columns": list(x_train.columns)},
        "model_tfma": {k: round(float(tfma[k]), 4) for k in keys},
        "model_serving": {k: round(float(serving[k]), 4) for k in keys},
        "baseline_hgb": {k: round(float(baseline[k]), 4) for k in keys},
        "baseline_fit_s": round(fit_s, 2),
    }


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Every use case: golden-set quality and step times", "",
        f"{r['when']}, {m['cpus']} CPUs, Python {m['python']}, load average (1 min) "
        f"{m['load_average_1m_at_start']} at the start and {m['load_average_1m_at_end']} at the end "
        "(a machine shared with other jobs: wall times move with the load). Data: each config's "
        f"sample_data staged as 7 daily spans ending {END.isoformat()} plus its golden set.", "",
        "Reproduce: `make bench`, or `.venv/bin/python benchmarks/bench_use_cases.py "
        "[--use-case NAME ...]` (about 12 minutes on a loaded 2-core machine for all four). "
        "By hand, for one use case: `pipelines demo-data configs/<name>.yaml --end 2026-11-20`, then `pipelines run "
        "configs/<name>.yaml --span 2026-11-20`.", "",
        "## Golden-set quality: the pipeline's model next to a scikit-learn baseline", "",
        "Model (TFMA): the evaluate step's numbers, as gated and reported. Model (serving): the "
        "promoted SavedModel's `serving_default` on the golden set's raw examples, scored by "
        "scikit-learn. Baseline: `HistGradientBoosting{Classifier,Regressor}` (defaults, "
        "random_state=0) fitted on the same snapshot's train split, the model's feature columns "
        "only, scored on the same golden set. Δ = model (serving) − baseline; ✓ where the model is "
        "at least as good.", "",
        "| use case | task | train / golden rows | metric | model (TFMA) | model (serving) | "
        "baseline HGB | Δ | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, u in r["use_cases"].items():
        q = u["quality"]
        for key, label, higher in METRICS[u["task"]]:
            d = q["model_serving"][key] - q["baseline_hgb"][key]
            ok = "✓" if (d >= 0) == higher or d == 0 else ""
            lines.append(f"| {name} | {u['task']} | {q['rows']['train']} / {q['rows']['golden']} "
                         f"| {label} | {q['model_tfma'][key]:.4f} | {q['model_serving'][key]:.4f} "
                         f"| {q['baseline_hgb'][key]:.4f} | {d:+.4f} | {ok} |")
    lines += [
        "", "## Wall time per step (seconds, `pipelines run`, one process)", "",
        "Start-up: interpreter and CLI imports before the first step. Ingest includes the golden "
        "set; train includes the export; promote includes the infra check in a fresh process. "
        "Staging (`pipelines demo-data`, a wheel download when not cached) is not in the total.",
        "",
        "| use case | outcome | stage | start-up | " + " | ".join(STEPS) + " | total |",
        "|---|---|---|---|" + "---|" * len(STEPS) + "---|",
    ]
    for name, u in r["use_cases"].items():
        t = u["times"]
        outcome = (f"promoted v{u['promoted_version']}" if u["promoted_version"]
                   else "not promoted")
        cells = " | ".join(str(t["steps_s"].get(s, "–")) for s in STEPS)
        lines.append(f"| {name} | {outcome} | {t['stage_s']} | {t['startup_s']} | {cells} | "
                     f"{t['run_s']} |")
    lines += ["", NOTES, ""]
    return "\n".join(lines)


NOTES = """## Reading the numbers

- Model (TFMA) and model (serving) are two independent computations from the same SavedModel
  (TFMA's metrics inside the evaluate step; scikit-learn's on the exported `serving_default`).
  They must agree to rounding: a difference means the evaluate step's per-task metrics, or the
  label encoding it uses, are wrong.
- The baseline is a strong, untuned tabular learner given the same columns: it tells whether the
  pipeline's small DNN (one fixed configuration per use case, `model:` in the config) leaves
  quality on the table. Golden sets are small for penguins (62 birds: one bird is 0.016 of
  accuracy) and seattle_weather (293 days), so differences there of that size are noise.
- Wall times are of one run on a 2-core machine shared with other jobs (load average above), so
  they are upper bounds: on a quieter machine Adult's whole DAG took 76 s under
  `airflow dags test` (benchmarks/results/dag.md).
- Per-use-case provenance and how the thresholds were set: docs/data/<name>.md and the configs."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-case", action="append", dest="use_cases",
                        help="one configs/<name>.yaml (repeatable) [default: every config]")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder of use_cases.json/.md [default: {RESULTS.relative_to(REPO)}"
                        " when every use case runs; a partial run only prints]")
    args = parser.parse_args()
    from pipelines.config import load_config

    names = args.use_cases or sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    report: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average_1m_at_start": round(os.getloadavg()[0], 2)},
        "end_date": END.isoformat(), "use_cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_uc_") as tmp:
        for name in names:
            cfg = load_config(REPO / "configs" / f"{name}.yaml")
            print(f"== {name} ({cfg.task})", flush=True)
            ran = run_use_case(name, Path(tmp) / name)
            done = ran.pop("result")
            report["use_cases"][name] = {
                "task": cfg.task, "times": ran,
                "promoted_version": (done.get("promote") or {}).get("version"),
                "not_promoted": done.get("not_promoted"),
                "quality": quality(cfg, done),
            }
            print(json.dumps(report["use_cases"][name], indent=1), flush=True)
    report["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    out = args.out or (None if args.use_cases else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "use_cases.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "use_cases.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
