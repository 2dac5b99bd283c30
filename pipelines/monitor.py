"""Step `monitor`: the production model (and the shadow candidate) on a newly landed span.

Called through ``runner.run_step("monitor", ...)`` by the ``monitor_<name>`` DAG
(dags/monitor.py, via :func:`run`) and the benchmark. Writes one immutable folder::

    <home>/monitoring/<pipeline>/<span>-<time>-<id>/
        predictions.parquet   one row per example: the score of production (and shadow), the label
        tfma/                 TFMA's output of the live audit (labelled spans)
        monitoring.json       the record: inputs, metrics, checks, alarms

What it measures, all against the production model as registered (its registry.json leads to the
evaluation that let it out and the snapshot it was trained on):

* inputs, per column: the missing fraction; drift against the training snapshot's drift profile,
  the one validate stored, with validate's limits (pipelines/drift.py); the share of values that
  break the data contract's range and category rules (the GX suite of validate);
* outputs: the score distribution, and the positive rate (binary), the predicted class mix
  (multiclass) or the prediction range (regression), compared with the production evaluation;
* when the span carries labels: the audited metrics per slice through the evaluate step's own TFMA
  path (pipelines/eval_tfma.py) and its gates (pipelines/blessing.py), i.e. live performance and
  live fairness gaps.

Every judged quantity is a *check* (metric, value, bound, op, passed); the alarm rules of
``monitoring.alarms`` turn failed checks into reasons (:func:`alarm_reasons`, pure and unit-tested).
TensorFlow, TFMA and GX are imported inside the functions that need them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from pipelines import blessing, drift, registry, snapshots, store
from pipelines import shadow as shadow_policy
from pipelines.config import FAIRNESS_GATE, PipelineConfig
from pipelines.context import RunContext, utcnow
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_file, sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.store import publish, read_json, write_json_atomic

log = logging.getLogger(__name__)
RECORD = "monitoring.json"
PREDICTIONS = "predictions.parquet"
LIVE = "live"  # the TFMA dataset name of a monitored span
HEADLINE = {"binary": ("auc", True), "multiclass": ("accuracy", True), "regression": ("rmse", False)}
VALUE_RULES = ("expect_column_values_to_be_between", "expect_column_values_to_be_in_set")
SCORE_BINS = 10
BATCH = 4096


class NothingToMonitor(PipelineError):
    """No model is in production: there is nothing to score."""


# ---------------------------------------------------------------- the production model's origins

def version_record(cfg: PipelineConfig, home: Path, version: int) -> dict[str, Any]:
    path = registry.root(cfg, home) / str(version) / registry.VERSION_FILE
    return read_json(path) if path.is_file() else {}


def training_snapshots(meta: dict[str, Any]) -> list[str]:
    """The snapshots a registered version was trained on: model.json -> transform.json -> inputs;
    else the snapshots its evaluation read."""
    model_json = Path(meta.get("model_uri") or "/nonexistent").parent / "model.json"
    if model_json.is_file():
        for out in read_json(model_json).get("inputs", []):
            transform_json = Path(out["uri"]).parent / "transform.json"
            if out["kind"] == ArtifactKind.TRANSFORM_GRAPH and transform_json.is_file():
                uris = [i["uri"] for i in read_json(transform_json).get("inputs", [])
                        if i["kind"] == ArtifactKind.SNAPSHOT]
                if uris:
                    return uris
    evaluation = Path(meta.get("evaluation_uri") or "/nonexistent") / "evaluation.json"
    if evaluation.is_file():
        return [d["uri"] for d in read_json(evaluation)["data"].get("eval", [])]
    return []


def trained_spans(uris: list[str]) -> set[str]:
    """The spans of the snapshots a model was trained on (from their provenance)."""
    out: set[str] = set()
    for uri in uris:
        if (Path(uri) / "provenance.json").is_file():
            out.update(str(s) for s in snapshots.provenance(uri).get("spans") or [])
    return out


def shadow_exclusion(span: str, prod_uris: list[str], shadow_uris: list[str]) -> str | None:
    """Why a span cannot judge the shadow: a model trained on it (its score there proves nothing)."""
    who = [name for name, uris in (("the shadow", shadow_uris), ("production", prod_uris))
           if span in trained_spans(uris)]
    if who:
        return f"{' and '.join(who)} trained on span {span}: not counted for the shadow decision"
    return None


def reference_metrics(meta: dict[str, Any]) -> dict[str, Any]:
    """The production model's overall metrics on the eval split of the evaluation that let it out."""
    evaluation = Path(meta.get("evaluation_uri") or "/nonexistent") / "evaluation.json"
    if not evaluation.is_file():
        return {}
    for row in read_json(evaluation).get("rows", []):
        if row["dataset"] == "eval" and not row["slice"]:
            return dict(row["candidate"])
    return {}


def training_profile(cfg: PipelineConfig, uris: list[str]) -> dict[str, Any] | None:
    """The drift profile of the training snapshot (the one validate stored when there is one)."""
    from pipelines.validate import baseline_profile

    if not uris:
        return None
    if len(uris) == 1:
        return baseline_profile(cfg, uris[0])
    import pandas as pd

    return drift.profile(cfg, pd.concat([snapshots.read_frame(cfg, u) for u in uris]))


# ---------------------------------------------------------------- scoring

def snapshot_files(uri: str | Path) -> list[str]:
    """The TFRecord files of a snapshot in the row order of ``snapshots.read_frame``."""
    splits = [s for s in (*snapshots.SPLITS, snapshots.GOLDEN_SPLIT) if (Path(uri) / s).is_dir()]
    return sorted(str(f) for s in splits for f in (Path(uri) / s).glob("data-*.tfrecord"))


def score(cfg: PipelineConfig, model_dir: str | Path, files: list[str]):
    """``serving_default`` on every serialized example: (n,) binary, (n, K) multiclass, (n,) regression."""
    import numpy as np
    import tensorflow as tf

    from pipelines.evaluate import saved_model_dir
    from pipelines.train import output_key

    serve = tf.saved_model.load(str(saved_model_dir(model_dir))).signatures["serving_default"]
    key = output_key(cfg)
    parts = [serve(examples=batch)[key].numpy()
             for batch in tf.data.TFRecordDataset(files).batch(BATCH)]
    out = np.concatenate(parts) if parts else np.zeros((0, 1))
    return out if cfg.task == "multiclass" else out.reshape(-1)


# ---------------------------------------------------------------- metrics

def missing_fraction(cfg: PipelineConfig, frame) -> dict[str, float]:
    """Per column: the share of missing values (empty, the missing marker, or absent)."""
    markers = {"", cfg.source.missing_marker}
    out = {}
    for col in cfg.columns:
        values = frame[col.name]
        missing = values.isna()
        if col.type == "string":
            missing = missing | values.isin(markers)
        out[col.name] = round(float(missing.mean()) if len(values) else 0.0, 6)
    return out


def out_of_contract(cfg: PipelineConfig, frame) -> dict[str, dict[str, Any]]:
    """Per column: the largest share of values breaking one range or category rule of the suite."""
    from pipelines.validate import load_suite, run_suite

    out: dict[str, dict[str, Any]] = {}
    for r in run_suite(load_suite(cfg), frame).results:
        doc = r.to_json_dict()
        conf = doc["expectation_config"]
        column = conf["kwargs"].get("column")
        if conf["type"] not in VALUE_RULES or not column or (conf.get("meta") or {}).get("label_rate"):
            continue
        res = doc.get("result") or {}
        share = (res.get("unexpected_percent") or 0.0) / 100
        entry = out.setdefault(column, {"fraction": 0.0, "examples": []})
        if share >= entry["fraction"]:
            entry["fraction"] = round(share, 6)
        entry["examples"] = (entry["examples"] + list(res.get("partial_unexpected_list") or []))[:5]
    return out


def output_metrics(cfg: PipelineConfig, scores, label_mix: dict[str, float] | None,
                   reference: dict[str, Any]) -> dict[str, Any]:
    """Score distribution and the task's output statistic, with its change vs the reference."""
    import numpy as np

    out: dict[str, Any] = {"rows": int(len(scores))}
    if cfg.task == "multiclass":
        classes = [str(c) for c in cfg.label.classes or []]
        predicted = scores.argmax(axis=1)
        mix = {c: float((predicted == i).mean()) for i, c in enumerate(classes)}
        out["class_mix"] = {c: round(v, 6) for c, v in mix.items()}
        top = scores.max(axis=1)
        out["histogram"] = np.histogram(top, bins=SCORE_BINS, range=(0, 1))[0].tolist()
        if label_mix:
            out["change"] = round(max(abs(mix[c] - label_mix.get(c, 0.0)) for c in classes), 6)
            out["change_of"] = "largest share of a predicted class vs the training label mix"
        return out
    out.update(mean=round(float(scores.mean()), 6), min=round(float(scores.min()), 6),
               max=round(float(scores.max()), 6),
               quantiles={str(q): round(float(np.quantile(scores, q)), 6)
                          for q in (0.1, 0.5, 0.9)})
    if cfg.task == "binary":
        out["histogram"] = np.histogram(scores, bins=SCORE_BINS, range=(0, 1))[0].tolist()
        rate = float((scores >= cfg.evaluation.decision_threshold).mean())
        out["positive_rate"] = round(rate, 6)
        if reference.get("positive_rate") is not None:
            out["change"] = round(abs(rate - reference["positive_rate"]), 6)
            out["change_of"] = "positive rate vs the production evaluation"
    else:
        out["histogram"] = np.histogram(scores, bins=SCORE_BINS)[0].tolist()
        if reference.get("mean_prediction") is not None:
            out["change"] = round(abs(float(scores.mean()) - reference["mean_prediction"]), 6)
            out["change_of"] = "mean prediction vs the production evaluation (label units)"
    return out


def agreement(cfg: PipelineConfig, prod, shadow) -> dict[str, float]:
    """How often shadow and production decide alike (regression: their mean absolute gap)."""
    import numpy as np

    if cfg.task == "multiclass":
        return {"agreement_rate": round(float((prod.argmax(1) == shadow.argmax(1)).mean()), 6)}
    if cfg.task == "binary":
        thr = cfg.evaluation.decision_threshold
        return {"agreement_rate": round(float(((prod >= thr) == (shadow >= thr)).mean()), 6)}
    return {"mean_abs_difference": round(float(np.abs(prod - shadow).mean()), 6)}


def as_model(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """TFMA rows with ``model``'s metrics in the ``candidate`` place (what blessing judges)."""
    out = []
    for r in rows:
        if model in r:
            undefined = (r.get("undefined") or {}).get(model)
            intervals = (r.get("intervals") or {}).get(model)  # issue 11: gate_on uses them
            out.append({**r, "candidate": r[model],
                        "undefined": {"candidate": undefined} if undefined else {},
                        "intervals": {"candidate": intervals} if intervals else {}})
    return out


def live_thresholds(cfg: PipelineConfig) -> dict[str, float] | None:
    configured = cfg.monitoring.alarms.live_thresholds
    if configured is not None:
        return dict(configured) or None
    return blessing.effective_thresholds(cfg, None)


# ---------------------------------------------------------------- checks and alarms

def _check(group: str, metric: str, value: Any, bound: Any, op: str = "<=",
           note: str = "") -> dict[str, Any]:
    passed = None
    if value is not None and bound is not None:
        passed = bool(value <= bound if op == "<=" else value >= bound)
    return {"group": group, "metric": metric, "value": value, "bound": bound, "op": op,
            "passed": passed, "note": note}


def checks(cfg: PipelineConfig, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every judged quantity of a monitoring record (bound None: reported, not judged)."""
    alarms = cfg.monitoring.alarms
    out = []
    for name, col in record["inputs"]["columns"].items():
        d = col.get("drift")
        if d is not None:
            out.append(_check("drift", f"drift {name}", d["value"], d["threshold"],
                              note=drift.describe(name, d) if not d["passed"] else ""))
        out.append(_check("missing", f"missing {name}", col["missing_fraction"],
                          alarms.missing_fraction_max))
        if "out_of_contract_fraction" in col:
            out.append(_check("contract", f"out of contract {name}",
                              col["out_of_contract_fraction"], alarms.out_of_contract_fraction_max,
                              note=f"e.g. {col.get('out_of_contract_examples')}"))
    output = record["output"]
    if "change" in output:
        out.append(_check("output", "output change", output["change"], alarms.output_max_change,
                          note=output.get("change_of", "")))
    live = record.get("live") or {}
    for c in live.get("checks", []):
        if c["threshold"] == FAIRNESS_GATE:  # the slices compared go to the note: a stable name
            name, note = f"live {c['metric']}", "; ".join(filter(None, [c["slice"], c.get("note")]))
        else:
            name, note = f"live {c['metric']} {c['slice']}", c.get("note", "")
        out.append({**_check("live", name, c["value"], c["bound"], c["op"], note=note),
                    "passed": c["passed"], "threshold": c["threshold"]})
    if live.get("headline") is not None and live.get("reference") is not None:
        metric, higher = HEADLINE[cfg.task]
        drop = (live["reference"] - live["headline"]) if higher else (
            live["headline"] - live["reference"])
        out.append(_check("live", f"live {metric} drop vs evaluation", round(drop, 6),
                          alarms.live_max_drop))
    return out


def alarm_reasons(cfg: PipelineConfig, checks_: list[dict[str, Any]]) -> list[str]:
    """The alarms a record's checks raise under ``monitoring.alarms``, one line each."""
    alarms = cfg.monitoring.alarms
    reasons = []
    features = {c.name for c in cfg.feature_columns}
    drifted = [c for c in checks_ if c["group"] == "drift" and c["passed"] is False
               and c["metric"].removeprefix("drift ") in features]
    if alarms.max_drifted_features is not None and len(drifted) > alarms.max_drifted_features:
        names = ", ".join(c["metric"].removeprefix("drift ") for c in drifted)
        reasons.append(f"input drift: {len(drifted)} feature(s) beyond their limit against the "
                       f"production model's training data ({names}); allowed "
                       f"{alarms.max_drifted_features}: " + "; ".join(c["note"] for c in drifted))
    for c in checks_:
        if c["group"] == "drift" or c["passed"] is not False:
            continue
        bad = ">" if c["op"] == "<=" else "<"
        text = f"{c['metric']}: {c['value']:.4f} {bad} {c['bound']:.4f}"
        shown = c.get("note") and (c["group"] != "live" or c.get("threshold") == FAIRNESS_GATE)
        reasons.append(text + (f" ({c['note']})" if shown else ""))
    return reasons


# ---------------------------------------------------------------- the step

def monitor(cfg: PipelineConfig, home: Path, ctx: RunContext, snapshot_uri: str,
            span: str | None = None) -> dict[str, Any]:
    """Monitors one span's snapshot with the production model (and the shadow); see module doc.

    Raises:
        NothingToMonitor: no model is in production.
    """
    import pandas as pd

    started = time.perf_counter()
    aliases = registry.read_aliases(cfg, home)
    prod_version = aliases.get("production")
    if prod_version is None:
        raise NothingToMonitor(f"registry {cfg.name}: no model in production, nothing to "
                               f"monitor; promote one first (retrain_{cfg.name})")
    shadow_version = aliases.get("shadow")
    shadow_version = shadow_version if shadow_version not in (None, prod_version) else None
    base = registry.root(cfg, home)
    meta = version_record(cfg, home, prod_version)
    reference = reference_metrics(meta)
    uri = str(Path(snapshot_uri).resolve())
    prov = snapshots.provenance(uri)
    span = span or (prov.get("spans") or ["?"])[-1]
    frame = snapshots.read_frame(cfg, uri)
    if frame.empty:
        raise PipelineError(f"snapshot {uri} has no rows: nothing to monitor")
    files = snapshot_files(uri)

    # inputs
    train_uris = training_snapshots(meta)
    profile = training_profile(cfg, train_uris)
    drifts = drift.compare(cfg, profile, frame) if profile else {}
    contract = out_of_contract(cfg, frame)
    missing = missing_fraction(cfg, frame)
    columns = {}
    for col in cfg.columns:
        entry: dict[str, Any] = {"missing_fraction": missing[col.name],
                                 "drift": drifts.get(col.name)}
        if col.name in contract:
            entry["out_of_contract_fraction"] = contract[col.name]["fraction"]
            entry["out_of_contract_examples"] = contract[col.name]["examples"]
        columns[col.name] = entry

    # outputs
    prod_scores = score(cfg, base / str(prod_version), files)
    if len(prod_scores) != len(frame):
        raise PipelineError(f"scored {len(prod_scores)} examples but read {len(frame)} rows")
    label_profile = (profile or {}).get(cfg.label.column, {})
    label_mix = label_profile.get("frequencies") if cfg.task == "multiclass" else None
    output = output_metrics(cfg, prod_scores, label_mix, reference)
    shadow_scores = (score(cfg, base / str(shadow_version), files)
                     if shadow_version is not None else None)

    monitoring_id = f"{span}-{utcnow().replace(':', '').replace('-', '')[:15]}-{uuid.uuid4().hex[:6]}"
    final = store.path(home, store.Kind.MONITORING, cfg.name, monitoring_id)
    record: dict[str, Any] = {
        "monitoring_id": monitoring_id, "pipeline": cfg.name, "span": span, "created_at": utcnow(),
        "run_id": ctx.run_id, "task": cfg.task, "config_sha256": cfg.sha256,
        "snapshot": {"uri": uri, "snapshot_id": Path(uri).name, "rows": len(frame),
                     "content_sha256": prov.get("content_sha256")},
        "production": {"version": prod_version, "uri": str(base / str(prod_version)),
                       "model_sha256": meta.get("model_sha256"), "run_id": meta.get("run_id"),
                       "evaluation_uri": meta.get("evaluation_uri"),
                       "training_snapshots": train_uris},
        "shadow": None, "reference": reference,
        "inputs": {"columns": columns, "drift_baseline": train_uris[:1] or None},
        "output": output,
    }
    with publish(final) as tmp:
        preds = pd.DataFrame({"row": range(len(frame))})
        preds[cfg.label.column] = frame[cfg.label.column].to_numpy()
        _add_scores(cfg, preds, f"production_v{prod_version}", prod_scores)
        if shadow_scores is not None:
            _add_scores(cfg, preds, f"shadow_v{shadow_version}", shadow_scores)
        preds.to_parquet(tmp / PREDICTIONS, index=False)
        live = _live(cfg, files, base / str(prod_version),
                     base / str(shadow_version) if shadow_version is not None else None,
                     tmp / "tfma", reference)
        record["live"] = live.pop("production")
        if shadow_version is not None:
            shadow_uris = training_snapshots(version_record(cfg, home, shadow_version))
            record["shadow"] = {"version": shadow_version, "uri": str(base / str(shadow_version)),
                                "since": aliases.get("shadow_since"),
                                "baseline": aliases.get("shadow_baseline"),
                                "training_snapshots": shadow_uris,
                                "excluded": shadow_exclusion(span, train_uris, shadow_uris),
                                **agreement(cfg, prod_scores, shadow_scores), **live["shadow"]}
        record["checks"] = checks(cfg, record)
        record["alarms"] = alarm_reasons(cfg, record["checks"])
        record["seconds"] = round(time.perf_counter() - started, 2)
        record["predictions"] = {"uri": str(final / PREDICTIONS), "rows": len(preds),
                                 "sha256": sha256_file(tmp / PREDICTIONS)}
        write_json_atomic(tmp / RECORD, record)
    log.info("monitoring %s of span %s with production v%s: %s", monitoring_id, span, prod_version,
             "; ".join(record["alarms"]) or "no alarm")
    model_inputs = [artifact(ArtifactKind.MODEL_VERSION, base / str(prod_version), None, None,
                             version=prod_version, alias="production")]
    if shadow_version is not None:
        model_inputs.append(artifact(ArtifactKind.MODEL_VERSION, base / str(shadow_version), None,
                                     None, version=shadow_version, alias="shadow"))
    return {
        "monitoring_uri": str(final), "monitoring_id": monitoring_id, "span": span,
        "production_version": prod_version, "shadow_version": shadow_version,
        "alarms": record["alarms"], "rows": len(frame), "seconds": record["seconds"],
        "predictions_uri": record["predictions"]["uri"],
        "inputs": [artifact(ArtifactKind.SNAPSHOT, uri, sha256_tree(uri), None,
                            snapshot_id=Path(uri).name, span=span), *model_inputs],
        "outputs": [
            artifact(ArtifactKind.PREDICTIONS, final / PREDICTIONS, record["predictions"]["sha256"],
                     (final / PREDICTIONS).stat().st_size, rows=len(frame),
                     model_version=prod_version, shadow_version=shadow_version),
            artifact(ArtifactKind.MONITORING_RESULT, final, sha256_tree(final), None,
                     alarms=len(record["alarms"]), span=span),
        ],
    }


def _add_scores(cfg: PipelineConfig, frame, name: str, scores) -> None:
    if cfg.task == "multiclass":
        for i, c in enumerate(cfg.label.classes or []):
            frame[f"{name}:{c}"] = scores[:, i]
    else:
        frame[name] = scores


def _live(cfg: PipelineConfig, files: list[str], prod_dir: Path, shadow_dir: Path | None,
          output: Path, reference: dict[str, Any]) -> dict[str, Any]:
    """Live audit through evaluate's TFMA path: production's checks (and the shadow's vs it)."""
    from pipelines import eval_tfma
    from pipelines.evaluate import saved_model_dir

    metric, _ = HEADLINE[cfg.task]
    # TFMA scores `candidate` and, when given, the `baseline`: the shadow is the candidate judged
    # against production, as evaluate judges a candidate against production.
    candidate = saved_model_dir(shadow_dir if shadow_dir is not None else prod_dir)
    baseline = saved_model_dir(prod_dir) if shadow_dir is not None else None
    started = time.perf_counter()
    eval_tfma.run(cfg, {LIVE: files}, str(candidate), str(baseline) if baseline else None, output)
    rows = eval_tfma.load_rows(cfg, output)
    tfma_seconds = round(time.perf_counter() - started, 2)
    thresholds = live_thresholds(cfg)
    prod_rows = as_model(rows, eval_tfma.BASELINE if shadow_dir is not None else eval_tfma.CANDIDATE)
    _, _, prod_checks = (blessing.decide(cfg, prod_rows, thresholds, has_baseline=False)
                         if thresholds else (True, [], []))
    overall: dict[str, Any] = next((r["candidate"] for r in prod_rows if not r["slice"]), {})
    out: dict[str, Any] = {"production": {
        "rows": prod_rows, "checks": prod_checks, "thresholds": thresholds,
        "overall": overall, "headline_metric": metric, "headline": overall.get(metric),
        "reference": reference.get(metric), "tfma_seconds": tfma_seconds,
        "fairness_gaps": [c for c in prod_checks if c["threshold"] == FAIRNESS_GATE]}}
    if shadow_dir is not None:
        blessed, reasons, shadow_checks = blessing.decide(cfg, rows, thresholds, has_baseline=True)
        shadow_overall: dict[str, Any] = next((r["candidate"] for r in rows if not r["slice"]), {})
        out["shadow"] = {"rows": as_model(rows, eval_tfma.CANDIDATE), "checks": shadow_checks,
                         "no_worse": blessed, "reasons": reasons, "overall": shadow_overall,
                         "headline": shadow_overall.get(metric),
                         # the margins of promotion.shadow_margins, per slice (pipelines/shadow.py)
                         "comparisons": shadow_policy.compare(cfg, rows, eval_tfma.CANDIDATE,
                                                       eval_tfma.BASELINE)}
    return out


# ---------------------------------------------------------------- DAG entry points

def latest_span(extra: dict[str, Any] | None) -> str | None:
    """The newest span named by a snapshot Asset event's extra (retrain's ingest sets ``spans``)."""
    spans = (extra or {}).get("spans") or []
    return str(spans[-1]) if spans else None


def run(config_path: str | Path, ctx: RunContext, span: str | dt.date,
        home: str | Path | None = None) -> dict[str, Any]:
    """Ingests the one span (content-addressed: reused when already ingested) and monitors it."""
    from pipelines import runner
    from pipelines.config import load_config
    from pipelines.store import resolve_home

    cfg, home = load_config(config_path), resolve_home(home)
    day = span if isinstance(span, dt.date) else dt.date.fromisoformat(str(span))
    ingested = runner.run_step("ingest", cfg, home, ctx, span=day, window=1)
    result = runner.run_step("monitor", cfg, home, ctx, snapshot_uri=ingested["uri"],
                             span=day.isoformat())
    return {k: v for k, v in result.items() if k not in ("inputs", "outputs")}
