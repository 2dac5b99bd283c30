"""Step `report`: one self-contained HTML audit page per run (no Jupyter, no network).

Called by ``runner.run_step("report", ...)`` (the CLI ``pipelines report`` and the DAG's last task).
Writes ``<home>/reports/<pipeline>/<run_id>.html``: the decision and its reasons first, every gate
with its value and bound, the per-slice metrics of candidate and baseline side by side with
deltas (failed gates highlighted), ROC and calibration curves and per-slice AUC bars as embedded
PNG (matplotlib, Agg backend), and what the model was evaluated on (snapshot ids, sha256).
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import uuid
from pathlib import Path
from typing import Any

from pipelines import evaluate as evaluation_lib
from pipelines.common import RunContext, artifact, sha256_file
from pipelines.config import PipelineConfig

COLUMNS = [("example_count", "n"), ("auc", "AUC"), ("auc_pr", "AUC-PR"), ("accuracy", "acc"),
           ("precision", "prec"), ("recall", "recall"), ("f1", "F1"), ("fpr", "FPR"),
           ("fnr", "FNR"), ("calibration", "calib"), ("log_loss", "log loss")]
CSS = """body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222}
h1.ok{color:#1b6e20}h1.no{color:#b00020}table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;text-align:right}
th{background:#f0f0f0}td.l{text-align:left}tr.fail td{background:#ffd7d7}
tr.small td{color:#888}.pos{color:#1b6e20}.neg{color:#b00020}img{max-width:48%;margin:4px}"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) > 10 else f"{v:.{digits}f}"
    return html.escape(str(v))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figures(record: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    for dataset, models in sorted(record["curves"].items()):
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
        roc.set(title=f"ROC ({dataset})", xlabel="false positive rate", ylabel="true positive rate")
        cal.set(title=f"Calibration ({dataset})", xlabel="mean prediction", ylabel="mean label")
        roc.legend(), cal.legend()
        images.append((f"ROC and calibration curves, {dataset}", _png(fig)))
        plt.close(fig)
        rows = [r for r in record["rows"] if r["dataset"] == dataset and r["slice"]]
        fig, ax = plt.subplots(figsize=(9, max(3, 0.22 * len(rows))))
        ys = range(len(rows))
        ax.barh([y + 0.2 for y in ys], [r["candidate"].get("auc") or 0 for r in rows], 0.4,
                label="candidate")
        if any("baseline" in r for r in rows):
            ax.barh([y - 0.2 for y in ys], [(r.get("baseline") or {}).get("auc") or 0 for r in rows],
                    0.4, label="baseline")
        if record.get("thresholds") and record["thresholds"].get("slice_auc_min") is not None:
            ax.axvline(record["thresholds"]["slice_auc_min"], color="red", ls="--", label="slice bound")
        ax.set_yticks(list(ys), [r["name"] for r in rows], fontsize=7)
        ax.set(xlim=(0.5, 1.0), title=f"AUC per slice ({dataset})")
        ax.legend(fontsize=7)
        images.append((f"AUC per slice, {dataset}", _png(fig)))
        plt.close(fig)
    return images


def _decision(record: dict[str, Any], promotion: dict[str, Any] | None) -> tuple[bool, str, list]:
    if promotion is not None:
        if promotion.get("promoted"):
            return True, f"PROMOTED as version {promotion['version']}", []
        return False, "NOT PROMOTED", promotion.get("reasons") or record["reasons"]
    if record["blessed"]:
        return True, "BLESSED (promotion not run)", []
    return False, "NOT BLESSED", record["reasons"]


def render(record: dict[str, Any], promotion: dict[str, Any] | None = None) -> str:
    """The HTML page for an evaluation record (and the promotion result, when there is one)."""
    ok, title, reasons = _decision(record, promotion)
    failed = {(c["dataset"], c["slice"]) for c in record["checks"] if c["passed"] is False}
    esc = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(record['pipeline'])} "
           f"audit {esc(record['evaluation_id'])}</title><style>{CSS}</style></head><body>",
           f"<h1 id='decision' class='{'ok' if ok else 'no'}'>{esc(title)}</h1>",
           f"<p>pipeline <b>{esc(record['pipeline'])}</b>, evaluation "
           f"{esc(record['evaluation_id'])}, run {esc(record['run_id'])}, {esc(record['created_at'])}</p>"]
    if reasons:
        out.append("<h2>Reasons</h2><ul id='reasons'>"
                   + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>")
    base = record.get("baseline")
    data = record["data"]
    out.append("<h2>Evaluated on</h2><table id='inputs'>")
    items = [("candidate model", f"{record['model']['uri']} (sha256 {record['model']['sha256']})"),
             ("baseline", f"production version {base['version']}: {base['uri']}" if base
              else "none: first model, absolute thresholds only")]
    items += [("eval split", f"snapshot {d['snapshot_id']} (sha256 {d['sha256']})")
              for d in data["eval"]]
    if data.get("golden"):
        items.append(("golden set", f"snapshot {data['golden']['snapshot_id']} "
                                    f"(sha256 {data['golden']['sha256']})"))
    items.append(("decision threshold", str(record["decision_threshold"])))
    items.append(("min slice size", f"{record['min_slice_size']} (smaller slices: reported, not gated)"))
    if promotion and promotion.get("infra_check"):
        ic = promotion["infra_check"]
        items.append(("infra check", f"passed={ic.get('passed')} latency_ms={ic.get('latency_ms')}"))
    out += [f"<tr><td class='l'>{esc(k)}</td><td class='l'>{esc(v)}</td></tr>" for k, v in items]
    out.append("</table><h2>Metrics per slice: candidate (baseline, delta)</h2><table id='slices'>"
               "<tr><th>dataset</th><th>slice</th>"
               + "".join(f"<th>{esc(label)}</th>" for _, label in COLUMNS) + "</tr>")
    for r in record["rows"]:
        cand, bl = r["candidate"], r.get("baseline") or {}
        small = (cand.get("example_count") or 0) < record["min_slice_size"]
        cls = "fail" if (r["dataset"], r["name"]) in failed else ("small" if small else "")
        cells = []
        for key, _ in COLUMNS:
            cell = _fmt(cand.get(key))
            if key != "example_count" and bl.get(key) is not None and cand.get(key) is not None:
                d = cand[key] - bl[key]
                cell += (f"<br><small>{_fmt(bl[key])} <span class='{'pos' if d >= 0 else 'neg'}'>"
                         f"{d:+.4f}</span></small>")
            cells.append(f"<td>{cell}</td>")
        out.append(f"<tr class='{cls}'><td class='l'>{esc(r['dataset'])}</td>"
                   f"<td class='l'>{esc(r['name'])}</td>{''.join(cells)}</tr>")
    out.append("</table><h2>Gates</h2><table id='checks'><tr><th>result</th><th>threshold</th>"
               "<th>dataset</th><th>slice</th><th>metric</th><th>value</th><th>bound</th>"
               "<th>note</th></tr>")
    for c in record["checks"]:
        state = {True: "pass", False: "FAIL", None: "not gated"}[c["passed"]]
        out.append(f"<tr class='{'fail' if c['passed'] is False else ''}'><td class='l'>{state}</td>"
                   f"<td class='l'>{esc(c['threshold'])}</td><td class='l'>{esc(c['dataset'])}</td>"
                   f"<td class='l'>{esc(c['slice'])}</td><td class='l'>{esc(c['metric'])}</td>"
                   f"<td>{_fmt(c['value'])}</td><td>{esc(c['op'])} {_fmt(c['bound'])}</td>"
                   f"<td class='l'>{esc(c['note'])}</td></tr>")
    out.append("</table><h2>Confusion matrices, overall</h2><table id='confusion'><tr>"
               "<th>dataset</th><th>model</th><th>threshold</th><th>TP</th><th>FP</th>"
               "<th>TN</th><th>FN</th></tr>")
    for dataset, models in sorted(record["curves"].items()):
        for model, c in sorted(models.items()):
            out += [f"<tr><td class='l'>{esc(dataset)}</td><td class='l'>{esc(model)}</td>"
                    f"<td>{m['threshold']}</td><td>{m['tp']:.0f}</td><td>{m['fp']:.0f}</td>"
                    f"<td>{m['tn']:.0f}</td><td>{m['fn']:.0f}</td></tr>"
                    for m in c.get("confusion_matrices", [])]
    out.append("</table><h2>Curves</h2>")
    out += [f"<img alt='{esc(alt)}' src='{src}'>" for alt, src in _figures(record)]
    out.append("</body></html>")
    return "\n".join(out)


def report(cfg: PipelineConfig, home: Path, ctx: RunContext, evaluation_uri: str,
           promotion: dict[str, Any] | None = None) -> dict[str, Any]:
    """Writes the audit page of ``evaluation_uri`` (and ``promotion``) under <home>/reports/."""
    record = evaluation_lib.load(evaluation_uri)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", ctx.run_id).strip("._") or record["evaluation_id"]
    path = Path(home) / "reports" / cfg.name / f"{name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(render(record, promotion), encoding="utf-8")
    os.replace(tmp, path)
    decision = _decision(record, promotion)[1]
    return {"report_html": str(path), "decision": decision,
            "inputs": [artifact("ModelEvaluation", evaluation_uri, None, None)],
            "outputs": [artifact("AuditReport", path, sha256_file(path), path.stat().st_size,
                                 decision=decision)]}
