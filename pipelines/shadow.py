"""The `shadow` promotion policy (issue 12): the candidate is judged on live spans, then promoted
or dropped.

Called by :mod:`pipelines.monitor` (:func:`compare`: one span's per-slice metrics of both models,
kept in the span's record), by the ``shadow_decision`` task of monitor_<name> through :func:`run`,
and as the step ``shadow`` (``runner.run_step``; :func:`decide_step`), which records the decision
in lineage, with the monitoring records it rests on as inputs, before the registry's aliases move
(:func:`pipelines.registry.promote_shadow` / :func:`pipelines.registry.drop_shadow`).

The rule (:func:`tally` and :func:`judge`, pure and unit-tested):

* a span **counts** for the pending shadow when the monitor scored it with that shadow beside the
  production version the shadow was set against, after it was set, and neither model was trained
  on it (a model scored on its own training rows proves nothing). Each span counts once (its newest
  record); the first ``promotion.shadow_spans`` counted spans decide;
* a span on which production's metric of a whole-span margin (``<metric>``) is **undefined** does
  not count: the decision **waits** for another span (listed with why);
* each margin metric is pooled over the counted spans (example-weighted mean of each span's value)
  for both models: over the whole span for ``<metric>``, per slice for ``slice_<metric>`` (slices
  of at least ``evaluation.min_slice_size`` pooled examples, as evaluate gates them);
* **dropped** when a metric of the shadow is worse than production's by more than its margin, or
  is undefined on a span where production's is defined (undefined never counts as "no worse"), or
  when a ``slice_<metric>`` margin could not compare a single slice;
* otherwise **promoted**. Slices that could not be compared are listed in the decision.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines import registry, store
from pipelines.config import SHADOW_METRICS, PipelineConfig
from pipelines.context import RunContext
from pipelines.errors import NotPromoted, PipelineError
from pipelines.hashing import sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.store import read_json

log = logging.getLogger(__name__)
EPS = 1e-12  # a delta equal to the margin is within it


def margins(cfg: PipelineConfig) -> list[tuple[str, str, str, float]]:
    """(key, metric, scope, margin) of ``promotion.shadow_margins``; scope overall or slice."""
    out = []
    for key, margin in cfg.promotion.shadow_margins.items():
        if key.startswith("slice_"):
            out.append((key, key.removeprefix("slice_"), "slice", float(margin)))
        else:
            out.append((key, key, "overall", float(margin)))
    return out


def compare(cfg: PipelineConfig, rows: list[dict[str, Any]], shadow_key: str,
            production_key: str) -> list[dict[str, Any]]:
    """One span's values of every margin metric for both models, per slice it applies to.

    ``rows`` are the live TFMA rows (pipelines/eval_tfma.load_rows) holding both models' metrics
    under ``shadow_key`` and ``production_key``.
    """
    out = []
    for key, metric, scope, _ in margins(cfg):
        for r in rows:
            if (scope == "overall") != (not r["slice"]):
                continue
            prod, shadow = r.get(production_key) or {}, r.get(shadow_key) or {}
            why = r.get("undefined") or {}
            out.append({
                "key": key, "metric": metric, "slice": r.get("name") or "overall",
                "production": prod.get(metric), "shadow": shadow.get(metric),
                "examples": prod.get("example_count") or shadow.get("example_count") or 0,
                "why_undefined": {
                    "production": (why.get(production_key) or {}).get(metric)
                    if prod.get(metric) is None else None,
                    "shadow": (why.get(shadow_key) or {}).get(metric)
                    if shadow.get(metric) is None else None}})
    return out


# ---------------------------------------------------------------- counting spans

def monitoring_records(cfg: PipelineConfig, home: Path) -> list[dict[str, Any]]:
    """Every monitoring record of the pipeline (with its ``_uri``), oldest first."""
    root = store.root(home, store.Kind.MONITORING, cfg.name)
    out = []
    if root.is_dir():
        for folder in root.iterdir():
            marker = folder / store.MARKERS[store.Kind.MONITORING]
            if folder.name.startswith(".") or not marker.is_file():
                continue
            out.append({**read_json(marker), "_uri": str(folder)})
    return sorted(out, key=lambda r: r["created_at"])


def tally(cfg: PipelineConfig, pending: dict[str, Any],
          recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Which monitored spans count for the pending shadow, and which do not (with why).

    ``pending``: ``{version, baseline, since}`` of the shadow (registry.shadow).
    """
    newest: dict[str, dict[str, Any]] = {}
    for rec in recs:
        sh = rec.get("shadow") or {}
        if sh.get("version") != pending["version"] or \
                rec["production"]["version"] != pending["baseline"] or \
                rec["created_at"] < (pending.get("since") or ""):
            continue
        newest[rec["span"]] = rec  # recs are oldest first: the newest record of a span wins
    overall = [key for key, _, scope, _ in margins(cfg) if scope == "overall"]
    counted, not_counted = [], []
    for rec in sorted(newest.values(), key=lambda r: r["created_at"]):
        sh = rec["shadow"]
        why = sh.get("excluded")
        if why is None and "comparisons" not in sh:
            why = "no live metrics (the span carries no labels)"
        if why is None:
            undefined = [c for c in sh["comparisons"]
                         if c["key"] in overall and c["production"] is None]
            if undefined:
                why = "; ".join(
                    f"production's live {c['metric']} is undefined "
                    f"({c['why_undefined']['production'] or 'no value'}): the decision waits "
                    "for another span" for c in undefined)
        if why is not None:
            not_counted.append({"span": rec["span"], "monitoring_uri": rec["_uri"], "why": why})
            continue
        counted.append({"span": rec["span"], "monitoring_uri": rec["_uri"],
                        "created_at": rec["created_at"], "comparisons": sh["comparisons"],
                        **{k: sh[k] for k in ("agreement_rate", "mean_abs_difference")
                           if k in sh}})
    return {"shadow": pending["version"], "production": pending["baseline"],
            "since": pending.get("since"), "needed": cfg.promotion.shadow_spans,
            "counted": counted, "not_counted": not_counted}


# ---------------------------------------------------------------- the decision rule

def _pool(values: list[tuple[float, int]]) -> float:
    total = sum(n for _, n in values)
    if total <= 0:
        return sum(v for v, _ in values) / len(values)
    return sum(v * n for v, n in values) / total


def judge(cfg: PipelineConfig, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision on counted spans: ``promote`` or ``drop`` with reasons (see module doc)."""
    higher = SHADOW_METRICS[cfg.task]
    limit = {key: margin for key, _, _, margin in margins(cfg)}
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for s in spans:
        for c in s["comparisons"]:
            groups.setdefault((c["key"], c["slice"]), []).append((s["span"], c))
    reasons, deltas, not_compared = [], [], []
    compared_keys: set[str] = set()
    for (key, slice_), items in groups.items():
        metric = items[0][1]["metric"]
        both = [(c, span) for span, c in items
                if c["production"] is not None and c["shadow"] is not None]
        shadow_undefined = [(c, span) for span, c in items
                            if c["production"] is not None and c["shadow"] is None]
        for c, span in shadow_undefined:
            compared_keys.add(key)  # judged: worse
            reasons.append(f"live {metric} on {slice_}: the shadow's is undefined on span {span} "
                           f"({c['why_undefined']['shadow'] or 'no value'}) where production's "
                           f"is {c['production']:.4f}; undefined never counts as no worse")
        examples = int(sum(c["examples"] for c, _ in both))  # TFMA counts are floats
        if not both:
            not_compared.append({"key": key, "slice": slice_, "why": "undefined for production "
                                 "on every span" if not shadow_undefined else "undefined for the "
                                 "shadow"})
            continue
        if key.startswith("slice_") and examples < cfg.evaluation.min_slice_size:
            not_compared.append({"key": key, "slice": slice_,
                                 "why": f"{examples} examples < evaluation.min_slice_size "
                                        f"{cfg.evaluation.min_slice_size}"})
            continue
        prod = _pool([(c["production"], c["examples"]) for c, _ in both])
        shadow = _pool([(c["shadow"], c["examples"]) for c, _ in both])
        worse = (prod - shadow) if higher[metric] else (shadow - prod)
        ok = worse <= limit[key] + EPS
        compared_keys.add(key)
        deltas.append({"key": key, "metric": metric, "slice": slice_, "production": round(prod, 6),
                       "shadow": round(shadow, 6), "worse_by": round(worse, 6),
                       "margin": limit[key], "spans": len(both), "examples": examples,
                       "passed": ok})
        if not ok:
            reasons.append(f"live {metric} on {slice_}: shadow {shadow:.4f} vs production "
                           f"{prod:.4f} over {len(both)} span(s) ({examples} examples): worse by "
                           f"{worse:.4f} > margin {limit[key]:g}")
    for key, _, scope, _ in margins(cfg):
        if scope == "slice" and key not in compared_keys:
            reasons.append(f"{key}: no slice could be compared on the judged spans "
                           f"({', '.join(n['slice'] + ': ' + n['why'] for n in not_compared if n['key'] == key) or 'no slice rows'})")
    return {"decision": "drop" if reasons else "promote", "reasons": reasons, "deltas": deltas,
            "not_compared": not_compared, "spans_judged": [s["span"] for s in spans]}


# ---------------------------------------------------------------- the step and the DAG entry

def _summary(decision: dict[str, Any], t: dict[str, Any]) -> dict[str, Any]:
    return {**decision, "shadow_version": t["shadow"], "production_version": t["production"],
            "needed": t["needed"], "counted": [s["span"] for s in t["counted"]],
            "not_counted": t["not_counted"]}


def pending_decision(cfg: PipelineConfig, home: Path) -> dict[str, Any]:
    """Where the pending shadow stands: ``{"decision": None | "waiting" | "due", ...}``."""
    pending = registry.shadow(cfg, home)
    if pending is None:
        return {"decision": None, "why": f"registry {cfg.name}: no shadow pending"}
    t = tally(cfg, pending, monitoring_records(cfg, home))
    state = "due" if len(t["counted"]) >= t["needed"] else "waiting"
    return {"decision": state, "tally": t, "shadow_version": t["shadow"],
            "production_version": t["production"], "needed": t["needed"],
            "counted": [s["span"] for s in t["counted"]], "not_counted": t["not_counted"]}


def decide_step(cfg: PipelineConfig, home: Path, ctx: RunContext,
                execution: Any = None) -> dict[str, Any]:
    """Step ``shadow``: decides a due shadow and moves the aliases (recorded first in lineage).

    Raises:
        PipelineError: no shadow is pending, or it has not been scored on enough spans yet.
        NotPromoted: the registry's shadow or production moved since the tally.
    """
    state = pending_decision(cfg, home)
    if state["decision"] != "due":
        raise PipelineError(f"registry {cfg.name}: no shadow decision is due "
                            f"({state.get('why') or ', '.join(state['counted']) or 'no span'} "
                            f"counted of {state.get('needed')})")
    t = state["tally"]
    spans = t["counted"][:t["needed"]]
    result = _summary(judge(cfg, spans), t)
    base = registry.root(cfg, home)
    shadow_ref = base / str(t["shadow"])
    result["inputs"] = [
        *(artifact(ArtifactKind.MONITORING_RESULT, s["monitoring_uri"],
                   sha256_tree(s["monitoring_uri"]), None, span=s["span"]) for s in spans),
        artifact(ArtifactKind.MODEL_VERSION, shadow_ref,
                 registry.recorded_hashes(cfg, home, t["shadow"]).get("sha256"), None,
                 version=t["shadow"], alias="shadow")]
    result["outputs"] = []

    def commit(out: dict[str, Any]) -> None:
        journal = artifact(ArtifactKind.REGISTRY_ALIASES, out["journal_uri"],
                           out["journal_sha256"], None, action=f"shadow_{result['decision']}")
        if result["decision"] == "promote":
            now = out["production"]
            result["outputs"] = [artifact(ArtifactKind.MODEL_VERSION, now["uri"], now.get("sha256"),
                                          None, version=now["version"], alias="production",
                                          model_sha256=now.get("model_sha256")), journal]
        else:
            result["outputs"] = [journal]
        if execution is not None:
            execution.complete(result)

    if result["decision"] == "promote":
        registry.promote_shadow(cfg, home, ctx, t["shadow"], t["production"], result,
                                commit=commit)
    else:
        registry.drop_shadow(cfg, home, ctx, t["shadow"], t["production"], result["reasons"],
                             commit=commit, spans=result["spans_judged"])
    log.info("shadow version %s %s: %s", t["shadow"], result["decision"],
             "; ".join(result["reasons"]) or "no worse than production within the margins")
    return result


decide_step.records_lineage = True  # type: ignore[attr-defined]  # runner passes `execution`


def message(cfg: PipelineConfig, result: dict[str, Any]) -> str:
    """The one alert text of a decision."""
    spans = ", ".join(result["spans_judged"])
    if result["decision"] == "promote":
        deltas = "; ".join(f"{d['metric']} {d['slice']}: {d['shadow']:.4f} vs {d['production']:.4f}"
                           for d in result["deltas"])
        text = (f"{cfg.name}: shadow version {result['shadow_version']} PROMOTED to production "
                f"(was {result['production_version']}) after spans {spans}: no worse within the "
                f"margins ({deltas})")
    else:
        text = (f"{cfg.name}: shadow version {result['shadow_version']} DROPPED after spans "
                f"{spans}; production stays {result['production_version']}: "
                + "; ".join(result["reasons"]))
    if result.get("not_compared"):
        text += " [not compared: " + "; ".join(f"{n['key']} {n['slice']} ({n['why']})"
                                               for n in result["not_compared"]) + "]"
    return text


def run(config_path: str | Path, ctx: RunContext, home: str | Path | None = None,
        target: dict[str, Any] | None = None) -> dict[str, Any]:
    """After a monitored span: decide the pending shadow when it is due, and alert the decision.

    Returns ``{"decision": None}`` (no shadow), ``"waiting"`` (spans counted so far) or the
    decision (``promote``/``drop``) with its reasons; never raises when there is nothing to do.
    """
    from pipelines import notify, runner
    from pipelines.config import load_config
    from pipelines.store import resolve_home

    cfg, home = load_config(config_path), resolve_home(home)
    state = pending_decision(cfg, home)
    if state["decision"] != "due":
        state.pop("tally", None)
        return state
    try:
        result = runner.run_step("shadow", cfg, home, ctx)
    except NotPromoted as exc:  # the aliases moved meanwhile: the next span decides again
        log.warning("shadow decision not applied: %s", exc)
        return {"decision": "waiting", "why": str(exc)}
    out = {k: v for k, v in result.items() if k not in ("inputs", "outputs")}
    out["message"] = message(cfg, result)
    out["notified"] = notify.notify(out["message"], target)
    return out
