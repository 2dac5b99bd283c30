"""Step `report`: one self-contained HTML audit page per run (no Jupyter, no network).

Called by ``runner.run_step("report", ...)`` (the CLI ``pipelines report`` and the DAG's last task).
Writes ``<home>/reports/<pipeline>/<run_id>.html``. The page leads with the answer:

1. the decision (promoted, not promoted, or blessed but refused at promotion) and its reasons;
2. the headline metrics of the task, candidate against production, per dataset;
3. the worst gated slices, and the fairness gaps;

then the full tables: every gate with its value, bound and note, the per-slice metrics of
candidate and baseline side by side with deltas (failed gates highlighted), the task's plots as
embedded PNG (matplotlib, Agg backend; binary: ROC, calibration, confusion matrices; multiclass:
confusion matrix and per-class precision/recall/AUC; regression: mean label against mean prediction
per bucket, residual histogram, RMSE per slice), and what the model was evaluated on.

A metric that is undefined on a slice shows as "undefined", with the reason on hover and in a
footnote, never as 0. Every value taken from the data or the config is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

from pipelines import approval, store
from pipelines import evaluate as evaluation_lib
from pipelines.config import PipelineConfig
from pipelines.context import RunContext
from pipelines.hashing import sha256_file
from pipelines.results import ArtifactKind, artifact

# Per task: (metric, column label) of the per-slice table, the headline metrics (and whether
# higher is better), and the metric the worst slices are ranked by when no slice gate is set.
COLUMNS = {
    "binary": [("example_count", "n"), ("auc", "AUC"), ("auc_pr", "AUC-PR"), ("accuracy", "acc"),
               ("precision", "prec"), ("recall", "recall"), ("f1", "F1"), ("fpr", "FPR"),
               ("fnr", "FNR"), ("positive_rate", "pos. rate"), ("calibration", "calib"),
               ("log_loss", "log loss")],
    "multiclass": [("example_count", "n"), ("accuracy", "acc"), ("macro_auc", "macro AUC"),
                   ("macro_recall", "macro recall"), ("log_loss", "log loss")],
    "regression": [("example_count", "n"), ("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²"),
                   ("mean_label", "mean label"), ("mean_prediction", "mean pred."),
                   ("mean_residual", "mean residual")],
}
HEADLINE: dict[str, list[tuple[str, bool | None]]] = {
    "binary": [("auc", True), ("auc_pr", True), ("accuracy", True), ("log_loss", False)],
    "multiclass": [("accuracy", True), ("macro_auc", True), ("macro_recall", True),
                   ("log_loss", False)],
    "regression": [("rmse", False), ("mae", False), ("r2", True), ("mean_residual", None)],
}
RANK_BY = {"binary": ("auc", True), "multiclass": ("accuracy", True), "regression": ("rmse", False)}
WORST_SLICES = 5
CSS = """body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222}
h1.ok{color:#1b6e20}h1.no{color:#b00020}h1.warn{color:#a15c00}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;text-align:right}
th{background:#f0f0f0}td.l{text-align:left}tr.fail td{background:#ffd7d7}
tr.small td{color:#888}.pos{color:#1b6e20}.neg{color:#b00020}img{max-width:48%;margin:4px}
.undef{color:#a15c00;font-style:italic}section.answer{border-left:4px solid #888;padding-left:12px}
ol#undefined-notes{font-size:12px;color:#555}"""

esc = html.escape


class _Notes:
    """Footnotes for undefined metrics: one number per distinct reason."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def cell(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        n = self.reasons.index(reason) + 1
        return (f"<span class='undef' title='{esc(reason, quote=True)}'>undefined"
                f"<sup><a href='#undef-{n}'>{n}</a></sup></span>")

    def html(self) -> str:
        if not self.reasons:
            return ""
        return ("<h2>Undefined metrics</h2><ol id='undefined-notes'>"
                + "".join(f"<li id='undef-{i}'>{esc(r)}</li>"
                          for i, r in enumerate(self.reasons, 1)) + "</ol>")


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return esc(str(v))
    if isinstance(v, int | float):
        if isinstance(v, float) and math.isnan(v):
            return "–"
        return f"{v:.0f}" if float(v).is_integer() and abs(v) > 10 else f"{v:.{digits}f}"
    return esc(str(v))


def _metric(row: dict[str, Any], model: str, key: str, notes: _Notes) -> str:
    """A metric cell: the value, "undefined" with its reason, or – when not computed."""
    value = (row.get(model) or {}).get(key)
    if value is not None:
        ci = (row.get("intervals") or {}).get(model, {}).get(key)  # issue 11: 95% bootstrap
        return _fmt(value) + (f" <small class='ci'>[{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]</small>"
                              if ci else "")
    why = (row.get("undefined") or {}).get(model, {}).get(key)
    return notes.cell(why) if why else "–"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _slice_bars(plt, record, dataset: str, metric: str, label: str, bound_gate: str | None):
    rows = [r for r in record["rows"] if r["dataset"] == dataset and r["slice"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, max(3, 0.22 * len(rows))))
    ys = list(range(len(rows)))
    nan = float("nan")
    cand = [r["candidate"].get(metric) for r in rows]
    ax.barh([y + 0.2 for y in ys], [nan if v is None else v for v in cand], 0.4, label="candidate")
    if any("baseline" in r for r in rows):
        ax.barh([y - 0.2 for y in ys],
                [nan if (r.get("baseline") or {}).get(metric) is None else r["baseline"][metric]
                 for r in rows], 0.4, label="baseline")
    bound = (record.get("thresholds") or {}).get(bound_gate) if bound_gate else None
    if bound is not None:
        ax.axvline(bound, color="red", ls="--", label="slice bound")
    names = [r["name"] + (" (undefined)" if v is None else "") for r, v in zip(rows, cand,
                                                                               strict=True)]
    ax.set_yticks(ys, names, fontsize=7)
    ax.set(title=f"{label} per slice ({dataset})")
    ax.legend(fontsize=7)
    return fig


def _slice_gate(record: dict[str, Any]) -> str | None:
    gates = record.get("gates") or []
    return next((g["name"] for g in gates if g["scope"] == "slice"), None)


def _figures(record: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = record.get("task", "binary")
    images = []

    def add(alt, fig):
        if fig is not None:
            images.append((alt, _png(fig)))
            plt.close(fig)

    for dataset, models in sorted(record["curves"].items()):
        if task == "binary":
            fig, (roc, cal) = plt.subplots(1, 2, figsize=(9, 4))
            for model, c in sorted(models.items()):
                if c.get("roc"):
                    xs, ys = zip(*sorted(c["roc"]), strict=True)
                    roc.plot(xs, ys, label=model)
                if c.get("calibration"):
                    cal.plot([b["mean_prediction"] for b in c["calibration"]],
                             [b["mean_label"] for b in c["calibration"]], "o-", label=model)
            roc.plot([0, 1], [0, 1], ":", color="grey")
            cal.plot([0, 1], [0, 1], ":", color="grey")
            roc.set(title=f"ROC ({dataset})", xlabel="false positive rate",
                    ylabel="true positive rate")
            cal.set(title=f"Calibration ({dataset})", xlabel="mean prediction",
                    ylabel="mean label")
            roc.legend(), cal.legend()
            add(f"ROC and calibration curves, {dataset}", fig)
            add(f"AUC per slice, {dataset}",
                _slice_bars(plt, record, dataset, "auc", "AUC", _slice_gate(record)))
        elif task == "multiclass":
            for model, c in sorted(models.items()):
                cm = c.get("confusion_matrix")
                if not cm:
                    continue
                k = len(cm["classes"])
                fig, ax = plt.subplots(figsize=(1.2 * k + 3, 1.0 * k + 2))
                ax.imshow(cm["matrix"], cmap="Blues")
                for i in range(k):
                    for j in range(k):
                        ax.text(j, i, f"{cm['matrix'][i][j]:.0f}", ha="center", va="center",
                                fontsize=8)
                ax.set_xticks(range(k), cm["classes"], rotation=45, ha="right", fontsize=7)
                ax.set_yticks(range(k), cm["classes"], fontsize=7)
                ax.set(title=f"Confusion matrix, {model} ({dataset})", xlabel="predicted class",
                       ylabel="true class")
                add(f"Confusion matrix, {model}, {dataset}", fig)
            add(f"Accuracy per slice, {dataset}",
                _slice_bars(plt, record, dataset, "accuracy", "accuracy", _slice_gate(record)))
        else:
            fig, (cal, hist) = plt.subplots(1, 2, figsize=(9, 4))
            lo_hi: list[float] = []
            for model, c in sorted(models.items()):
                buckets = c.get("calibration") or []
                if buckets:
                    means = [b["mean_prediction"] for b in buckets]
                    labels = [b["mean_label"] for b in buckets]
                    cal.plot(means, labels, "o-", label=model)
                    lo_hi += means + labels
                for b in c.get("residuals") or []:
                    if b["low"] is None or b["high"] is None:
                        continue
                    hist.bar(b["low"], b["count"] / max(b["high"] - b["low"], 1e-12),
                             width=b["high"] - b["low"], align="edge", alpha=0.5,
                             color="C0" if model == "candidate" else "C1")
            if lo_hi:
                cal.plot([min(lo_hi), max(lo_hi)], [min(lo_hi), max(lo_hi)], ":", color="grey")
                cal.legend()
            cal.set(title=f"Mean label vs prediction ({dataset})", xlabel="mean prediction",
                    ylabel="mean label")
            hist.axvline(0, color="grey", ls=":")
            hist.set(title=f"Residuals label - prediction ({dataset})", xlabel="residual",
                     ylabel="examples per unit")
            add(f"Residual plots, {dataset}", fig)
            add(f"RMSE per slice, {dataset}",
                _slice_bars(plt, record, dataset, "rmse", "RMSE", _slice_gate(record)))
    return images


def _decision(record: dict[str, Any], promotion: dict[str, Any] | None
              ) -> tuple[str, str, list[str]]:
    """(css class, title, reasons) of the decision."""
    if shown := approval.shown(promotion):  # approval policy: awaiting, rejected or timed out
        return shown
    if promotion is not None:
        if promotion.get("shadow"):  # issue 12, policy shadow: judged live before production
            return ("ok", f"SHADOW CANDIDATE as version {promotion['version']} (production "
                    "unchanged)", promotion.get("reasons") or [])
        if promotion.get("promoted"):
            return "ok", f"PROMOTED as version {promotion['version']}", []
        if record["blessed"]:
            return "warn", "BLESSED BUT REFUSED AT PROMOTION", promotion.get("reasons") or []
        return "no", "NOT PROMOTED", promotion.get("reasons") or record["reasons"]
    if record["blessed"]:
        return "ok", "BLESSED (promotion not run)", []
    return "no", "NOT PROMOTED: not blessed", record["reasons"]


def _headline(record: dict[str, Any], task: str, notes: _Notes) -> list[str]:
    out = ["<h2>Headline metrics: candidate against production</h2><table id='headline'>"
           "<tr><th>dataset</th><th>metric</th><th>candidate</th><th>production</th>"
           "<th>change</th></tr>"]
    for r in record["rows"]:
        if r["slice"]:
            continue
        for key, higher in HEADLINE[task]:
            cand, base = r["candidate"].get(key), (r.get("baseline") or {}).get(key)
            change = "–"
            if cand is not None and base is not None:
                d = cand - base
                good = higher is None or d == 0 or (d > 0) == higher
                change = f"<span class='{'pos' if good else 'neg'}'>{d:+.4f}</span>"
            prod = _metric(r, "baseline", key, notes) if r.get("baseline") else "none"
            out.append(f"<tr><td class='l'>{esc(r['dataset'])}</td><td class='l'>{esc(key)}</td>"
                       f"<td>{_metric(r, 'candidate', key, notes)}</td><td>{prod}</td>"
                       f"<td>{change}</td></tr>")
    out.append("</table>")
    return out


def _worst(record: dict[str, Any], task: str, notes: _Notes) -> list[str]:
    gate = next((g for g in record.get("gates") or [] if g["scope"] == "slice"), None)
    metric, higher = (gate["metric"], gate["op"] == ">=") if gate else RANK_BY[task]
    min_size = record["min_slice_size"]
    gated = [r for r in record["rows"] if r["slice"]
             and (r["candidate"].get("example_count") or 0) >= min_size]
    defined = [r for r in gated if r["candidate"].get(metric) is not None]
    defined.sort(key=lambda r: r["candidate"][metric], reverse=not higher)
    undefined = [r for r in gated if r["candidate"].get(metric) is None]
    bound = (record.get("thresholds") or {}).get(gate["name"]) if gate else None
    out = [f"<h2>Worst slices by {esc(metric)}</h2><p>slices of at least {min_size} examples"
           + (f"; gate {esc(gate['name'])}: {esc(gate['op'])} {_fmt(bound)}" if gate else "")
           + "</p><table id='worst'><tr><th>dataset</th><th>slice</th><th>n</th>"
           f"<th>{esc(metric)}</th><th>production</th></tr>"]
    for r in defined[:WORST_SLICES] + undefined:
        fails = bound is not None and r["candidate"].get(metric) is not None and (
            r["candidate"][metric] < bound if higher else r["candidate"][metric] > bound)
        out.append(f"<tr class='{'fail' if fails else ''}'><td class='l'>{esc(r['dataset'])}</td>"
                   f"<td class='l'>{esc(r['name'])}</td>"
                   f"<td>{_fmt(r['candidate'].get('example_count'))}</td>"
                   f"<td>{_metric(r, 'candidate', metric, notes)}</td>"
                   f"<td>{_metric(r, 'baseline', metric, notes) if r.get('baseline') else '–'}"
                   "</td></tr>")
    if not gated:
        out.append("<tr><td class='l' colspan='5'>no slice large enough to gate</td></tr>")
    out.append("</table>")
    return out


def _fairness(record: dict[str, Any]) -> list[str]:
    fair = record.get("fairness")
    checks = [c for c in record["checks"] if c["kind"] == "fairness"]
    if not fair:
        return ["<h2>Fairness</h2><p id='fairness'>fairness gate off "
                "(evaluation.fairness is not configured)</p>"]
    out = [f"<h2>Fairness: {esc(fair['metric'])} gap across {esc(fair['feature'])}</h2>"
           "<table id='fairness'><tr><th>result</th><th>dataset</th><th>slices</th>"
           "<th>gap</th><th>bound</th><th>note</th></tr>"]
    for c in checks:
        state = {True: "pass", False: "FAIL", None: "not gated"}[c["passed"]]
        out.append(f"<tr class='{'fail' if c['passed'] is False else ''}'>"
                   f"<td class='l'>{state}</td><td class='l'>{esc(c['dataset'])}</td>"
                   f"<td class='l'>{esc(c['slice'])}</td><td>{_fmt(c['value'])}</td>"
                   f"<td>{esc(c['op'])} {_fmt(c['bound'])}</td>"
                   f"<td class='l'>{esc(c['note'])}</td></tr>")
    out.append("</table>")
    return out


def _checks(record: dict[str, Any]) -> list[str]:
    out = ["<h2>Gates</h2><table id='checks'><tr><th>result</th><th>threshold</th>"
           "<th>dataset</th><th>slice</th><th>metric</th><th>value</th><th>bound</th>"
           "<th>note</th></tr>"]
    for c in record["checks"]:
        state = {True: "pass", False: "FAIL", None: "not gated"}[c["passed"]]
        value = _fmt(c["value"])
        if c.get("interval"):  # issue 11: the 95% interval, and the number the gate compared
            value += f" [{_fmt(c['interval'][0])}, {_fmt(c['interval'][1])}]"
            if c.get("compared", "point") != "point":
                value += f"<br><small>{esc(c['compared'])}: {_fmt(c['compared_value'])}</small>"
        if c["value"] is None and "undefined" in c["note"]:
            value = f"<span class='undef' title='{esc(c['note'], quote=True)}'>undefined</span>"
        out.append(f"<tr class='{'fail' if c['passed'] is False else ''}'><td class='l'>{state}"
                   f"</td><td class='l'>{esc(c['threshold'])}</td>"
                   f"<td class='l'>{esc(c['dataset'])}</td><td class='l'>{esc(c['slice'])}</td>"
                   f"<td class='l'>{esc(c['metric'])}</td><td>{value}</td>"
                   f"<td>{esc(c['op'])} {_fmt(c['bound'])}</td>"
                   f"<td class='l'>{esc(c['note'])}</td></tr>")
    out.append("</table>")
    return out


def _slice_table(record: dict[str, Any], task: str, notes: _Notes) -> list[str]:
    cols = COLUMNS[task]
    failed = {(c["dataset"], c["slice"]) for c in record["checks"] if c["passed"] is False}
    out = ["<h2>Metrics per slice: candidate [95% interval] (baseline, delta)</h2><table id='slices'>"
           "<tr><th>dataset</th><th>slice</th>"
           + "".join(f"<th>{esc(label)}</th>" for _, label in cols) + "</tr>"]
    for r in record["rows"]:
        cand, bl = r["candidate"], r.get("baseline") or {}
        small = (cand.get("example_count") or 0) < record["min_slice_size"]
        cls = "fail" if (r["dataset"], r["name"]) in failed else ("small" if small else "")
        cells = []
        for key, _ in cols:
            cell = _metric(r, "candidate", key, notes)
            if key != "example_count" and r.get("baseline"):
                if bl.get(key) is not None and cand.get(key) is not None:
                    d = cand[key] - bl[key]
                    cell += (f"<br><small>{_fmt(bl[key])} <span class='{'pos' if d >= 0 else 'neg'}'>"
                             f"{d:+.4f}</span></small>")
                else:
                    cell += f"<br><small>{_metric(r, 'baseline', key, notes)}</small>"
            cells.append(f"<td>{cell}</td>")
        out.append(f"<tr class='{cls}'><td class='l'>{esc(r['dataset'])}</td>"
                   f"<td class='l'>{esc(r['name'])}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return out


def _class_table(record: dict[str, Any], notes: _Notes) -> list[str]:
    classes = [str(c) for c in (record.get("label") or {}).get("classes") or []]
    out = ["<h2>Per class, overall: candidate (production)</h2><table id='classes'><tr>"
           "<th>dataset</th><th>class</th><th>n</th><th>precision</th><th>recall</th>"
           "<th>one-vs-rest AUC</th></tr>"]
    curves = record.get("curves") or {}
    for r in record["rows"]:
        if r["slice"]:
            continue
        cm = ((curves.get(r["dataset"]) or {}).get("candidate") or {}).get("confusion_matrix")
        for i, c in enumerate(classes):
            n = sum(cm["matrix"][i]) if cm else None
            cells = []
            for m in ("precision", "recall", "auc"):
                key = f"{m}[{c}]"
                cell = _metric(r, "candidate", key, notes)
                if r.get("baseline"):
                    cell += f" <small>({_metric(r, 'baseline', key, notes)})</small>"
                cells.append(f"<td>{cell}</td>")
            out.append(f"<tr><td class='l'>{esc(r['dataset'])}</td><td class='l'>{esc(c)}</td>"
                       f"<td>{_fmt(n)}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return out


def _confusion_tables(record: dict[str, Any], task: str) -> list[str]:
    out = []
    if task == "binary":
        out.append("<h2>Confusion matrices, overall</h2><table id='confusion'><tr>"
                   "<th>dataset</th><th>model</th><th>threshold</th><th>TP</th><th>FP</th>"
                   "<th>TN</th><th>FN</th></tr>")
        for dataset, models in sorted(record["curves"].items()):
            for model, c in sorted(models.items()):
                out += [f"<tr><td class='l'>{esc(dataset)}</td><td class='l'>{esc(model)}</td>"
                        f"<td>{_fmt(m['threshold'])}</td><td>{m['tp']:.0f}</td>"
                        f"<td>{m['fp']:.0f}</td><td>{m['tn']:.0f}</td><td>{m['fn']:.0f}</td></tr>"
                        for m in c.get("confusion_matrices", [])]
        out.append("</table>")
    elif task == "multiclass":
        out.append("<h2>Confusion matrices, overall (rows: true class, columns: predicted)</h2>")
        for dataset, models in sorted(record["curves"].items()):
            for model, c in sorted(models.items()):
                cm = c.get("confusion_matrix")
                if not cm:
                    continue
                out.append(f"<table class='confusion' id='confusion-{esc(dataset)}-{esc(model)}'>"
                           f"<tr><th>{esc(dataset)}, {esc(model)}</th>"
                           + "".join(f"<th>{esc(k)}</th>" for k in cm["classes"]) + "</tr>")
                out += [f"<tr><th>{esc(k)}</th>" + "".join(f"<td>{v:.0f}</td>" for v in row)
                        + "</tr>" for k, row in zip(cm["classes"], cm["matrix"], strict=True)]
                out.append("</table>")
    return out


def _inputs(record: dict[str, Any], promotion: dict[str, Any] | None) -> list[str]:
    base = record.get("baseline")
    data = record["data"]
    items = [("task", record.get("task", "binary")),
             ("candidate model", f"{record['model']['uri']} (sha256 {record['model']['sha256']})"),
             ("baseline", f"production version {base['version']}: {base['uri']}" if base
              else "none: first model, absolute thresholds only")]
    items += [("eval split", f"snapshot {d['snapshot_id']} (sha256 {d['sha256']})")
              for d in data["eval"]]
    if data.get("golden"):
        items.append(("golden set", f"snapshot {data['golden']['snapshot_id']} "
                                    f"(sha256 {data['golden']['sha256']})"))
    if record.get("task", "binary") == "binary":
        items.append(("decision threshold", str(record["decision_threshold"])))
    items.append(("min slice size",
                  f"{record['min_slice_size']} (smaller slices: reported, not gated)"))
    if record.get("threshold_overrides"):
        items.append(("threshold overrides", str(record["threshold_overrides"])))
    if promotion and promotion.get("infra_check"):
        ic = promotion["infra_check"]
        items.append(("infra check", f"passed={ic.get('passed')} latency_ms={ic.get('latency_ms')}"))
    return (["<h2>Evaluated on</h2><table id='inputs'>"]
            + [f"<tr><td class='l'>{esc(k)}</td><td class='l'>{esc(str(v))}</td></tr>"
               for k, v in items] + ["</table>"])


def _trigger(trigger: dict[str, Any] | None) -> list[str]:
    """issue 12: why the run started, when a monitor alarm started it (RunContext.trigger)."""
    if not trigger:
        return []
    runs = ", ".join(trigger.get("source_runs") or []) or "unknown"
    return [f"<h2>Why this run</h2><p id='trigger'>Triggered by monitor alarm (monitor run "
            f"{esc(runs)}); trained on span {esc(str(trigger.get('span')))}:</p>"
            "<ul id='trigger-reasons'>"
            + "".join(f"<li>{esc(r)}</li>" for r in trigger.get("reasons") or []) + "</ul>"]


def render(record: dict[str, Any], promotion: dict[str, Any] | None = None,
           trigger: dict[str, Any] | None = None) -> str:
    """The HTML page for an evaluation record (and the promotion result, when there is one;
    ``trigger``: the monitor alarm that started the run, RunContext.trigger)."""
    task = record.get("task", "binary")
    cls, title, reasons = _decision(record, promotion)
    notes = _Notes()
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(record['pipeline'])} "
           f"audit {esc(record['evaluation_id'])}</title><style>{CSS}</style></head><body>",
           "<section class='answer' id='answer'>",
           f"<h1 id='decision' class='{cls}'>{esc(title)}</h1>",
           f"<p>pipeline <b>{esc(record['pipeline'])}</b> ({esc(task)}), evaluation "
           f"{esc(record['evaluation_id'])}, run {esc(record['run_id'])}, "
           f"{esc(record['created_at'])}</p>"]
    if reasons:
        out.append("<h2>Reasons</h2><ul id='reasons'>"
                   + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>")
    out += _trigger(trigger)
    out += _headline(record, task, notes)
    out += _worst(record, task, notes)
    out += _fairness(record)
    out += approval.section(promotion)
    out.append("</section><section id='details'>")
    out += _checks(record)
    out += _slice_table(record, task, notes)
    if task == "multiclass":
        out += _class_table(record, notes)
    out += _confusion_tables(record, task)
    out.append("<h2>Plots</h2>")
    out += [f"<img alt='{esc(alt, quote=True)}' src='{src}'>" for alt, src in _figures(record)]
    out += _inputs(record, promotion)
    out.append(notes.html())
    out.append("</section></body></html>")
    return "\n".join(out)


def report(cfg: PipelineConfig, home: Path, ctx: RunContext, evaluation_uri: str,
           promotion: dict[str, Any] | None = None) -> dict[str, Any]:
    """Writes the audit page of ``evaluation_uri`` (and ``promotion``) under <home>/reports/."""
    record = evaluation_lib.load(evaluation_uri)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", ctx.run_id).strip("._") or record["evaluation_id"]
    path = store.report_path(home, cfg.name, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(render(record, promotion, ctx.trigger), encoding="utf-8")
    os.replace(tmp, path)
    decision = _decision(record, promotion)[1]
    return {"report_html": str(path), "decision": decision,
            "inputs": [artifact(ArtifactKind.MODEL_EVALUATION, evaluation_uri, None, None)],
            "outputs": [artifact(ArtifactKind.AUDIT_REPORT, path, sha256_file(path), path.stat().st_size,
                                 decision=decision)]}
