"""The monitoring dashboard of a pipeline: ``<home>/reports/<name>/monitoring.html``.

Called by the ``dashboard`` task of monitor_<name> (dags/monitor.py), ``make demo`` and the tests.
One self-contained page (inline SVG, no script, no network) drawn from every monitoring record of
the pipeline (pipelines/monitor.py; the newest record of each span):

1. the answer first: does the newest span raise an alarm, and why;
2. one row per span: the production (and shadow) version that scored it, its alarms, the shadow
   decision taken on it (promoted or dropped, with reasons), a link to the audit report of that
   production version and to the span's monitoring record;
   then the shadow policy's state: the pending shadow and every shadow event of the registry;
3. every judged metric as a time series over the spans, with its bound (dashed) and the spans on
   which it failed marked in red: input drift, missing and out-of-contract shares per column, the
   output change, live metrics overall and per slice, live fairness gaps, and how much worse the
   shadow is than production per margin metric and slice (bound: the margin).

Every value taken from the data, the config or a record is HTML-escaped.
"""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path
from typing import Any

from pipelines import registry, store
from pipelines.config import SHADOW_METRICS, PipelineConfig
from pipelines.store import read_json, resolve_home, write_text_atomic

GROUPS = [("drift", "Input drift against the training data"),
          ("missing", "Missing values per column"),
          ("contract", "Values out of the data contract"),
          ("output", "Model output"),
          ("live", "Live metrics (labelled spans), overall and per slice"),
          ("shadow", "Shadow vs production: how much worse the shadow is (bound: the margin)")]
CSS = """body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222}
h1.ok{color:#1b6e20}h1.no{color:#b00020}table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr.alarm td{background:#ffd7d7}figure{display:inline-block;margin:6px;
border:1px solid #ddd;padding:4px}figcaption{font-size:11px;max-width:360px}
.fail{color:#b00020;font-weight:bold}"""
W, H, PAD = 360, 120, 28

esc = html.escape


def dashboard_path(cfg: PipelineConfig, home: Path) -> Path:
    return store.report_path(home, cfg.name, "monitoring")


def records(cfg: PipelineConfig, home: Path) -> list[dict[str, Any]]:
    """The newest monitoring record of each span, oldest span first."""
    root = store.root(home, store.Kind.MONITORING, cfg.name)
    newest: dict[str, dict[str, Any]] = {}
    if root.is_dir():
        for folder in root.iterdir():
            marker = folder / store.MARKERS[store.Kind.MONITORING]
            if folder.name.startswith(".") or not marker.is_file():
                continue
            rec = read_json(marker)
            rec["_uri"] = str(folder)
            if rec["span"] not in newest or rec["created_at"] > newest[rec["span"]]["created_at"]:
                newest[rec["span"]] = rec
    return [newest[s] for s in sorted(newest)]


def shadow_checks(cfg: PipelineConfig, rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The shadow's per-span deltas as checks: how much worse than production, bound the margin."""
    out = []
    margins = cfg.promotion.shadow_margins
    higher = SHADOW_METRICS[cfg.task]
    for c in (rec.get("shadow") or {}).get("comparisons") or []:
        worse = None
        if c["production"] is not None and c["shadow"] is not None:
            diff = c["production"] - c["shadow"]
            worse = round(diff if higher.get(c["metric"], True) else -diff, 6)
        bound = margins.get(c["key"])
        out.append({"group": "shadow", "metric": f"shadow worse by: {c['metric']} {c['slice']}",
                    "value": worse, "bound": bound, "op": "<=",
                    "passed": None if worse is None or bound is None else worse <= bound + 1e-12})
    return out


def series(recs: list[dict[str, Any]], cfg: PipelineConfig | None = None
           ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """group -> metric -> one point per span (span, value, bound, op, passed)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in recs:
        extra = shadow_checks(cfg, rec) if cfg is not None else []
        for c in [*rec.get("checks", []), *extra]:
            point = {"span": rec["span"], "value": c["value"], "bound": c["bound"], "op": c["op"],
                     "passed": c["passed"]}
            out.setdefault(c["group"], {}).setdefault(c["metric"], []).append(point)
    return out


def _shadow_section(history: dict[str, Any]) -> str:
    """The pending shadow and every shadow event of the registry history."""
    if not history["pending"] and not history["events"]:
        return ""
    out = ["<h2 id='shadow-policy'>Shadow candidates</h2>"]
    if p := history["pending"]:
        out.append(f"<p id='shadow-pending'>Pending: shadow version {esc(str(p['version']))}, "
                   f"set {esc(str(p['since']))}, judged against production "
                   f"{esc(str(p['baseline']))}.</p>")
    out.append("<ul id='shadow-events'>" + "".join(
        f"<li class='{esc(h['action'], quote=True)}'>{esc(registry.describe_shadow_event(h))}</li>"
        for h in history["events"]) + "</ul>")
    return "".join(out)


def _decisions(history: dict[str, Any]) -> dict[str, list[str]]:
    """span -> the shadow decisions taken on it (the last span each decision judged)."""
    out: dict[str, list[str]] = {}
    for h in history["events"]:
        if h["action"] in ("shadow_promote", "shadow_drop") and h.get("spans"):
            version = h["production"] if h["action"] == "shadow_promote" else h["shadow"]
            word = "PROMOTED" if h["action"] == "shadow_promote" else "DROPPED"
            out.setdefault(h["spans"][-1], []).append(f"shadow v{version} {word}")
    return out


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else esc(str(v))


def chart(metric: str, points: list[dict[str, Any]], spans: list[str]) -> str:
    """An inline SVG line chart of one metric over the spans, bound dashed, failures in red."""
    values = [p["value"] for p in points if p["value"] is not None]
    bounds = [p["bound"] for p in points if p["bound"] is not None]
    lo, hi = min(values + bounds, default=0.0), max(values + bounds, default=1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    n = max(len(spans) - 1, 1)

    def x(span: str) -> float:
        return PAD + (W - 2 * PAD) * spans.index(span) / n

    def y(v: float) -> float:
        return H - PAD + (-(H - 2 * PAD)) * (v - lo) / (hi - lo)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' role='img' "
             f"aria-label='{esc(metric, quote=True)}'>",
             f"<line x1='{PAD}' y1='{H - PAD}' x2='{W - PAD}' y2='{H - PAD}' stroke='#999'/>"]
    line = [(x(p["span"]), y(p["value"])) for p in points if p["value"] is not None]
    if len(line) > 1:
        parts.append("<polyline fill='none' stroke='#1f5fa8' stroke-width='1.5' points='"
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in line) + "'/>")
    bound_line = [(x(p["span"]), y(p["bound"])) for p in points if p["bound"] is not None]
    if len(bound_line) == 1:
        bound_line = [(PAD, bound_line[0][1]), (W - PAD, bound_line[0][1])]
    if bound_line:
        parts.append("<polyline class='bound' fill='none' stroke='#b00020' stroke-dasharray='4 3' "
                     "points='" + " ".join(f"{a:.1f},{b:.1f}" for a, b in bound_line) + "'/>")
    for p in points:
        if p["value"] is None:
            continue
        failed = p["passed"] is False
        parts.append(f"<circle class='{'alarm' if failed else 'point'}' cx='{x(p['span']):.1f}' "
                     f"cy='{y(p['value']):.1f}' r='{4 if failed else 2.5}' "
                     f"fill='{'#b00020' if failed else '#1f5fa8'}'><title>"
                     f"{esc(p['span'])}: {_num(p['value'])} (bound {p['op']} {_num(p['bound'])})"
                     "</title></circle>")
    parts.append(f"<text x='{PAD}' y='{H - 8}' font-size='9'>{esc(spans[0])}</text>")
    if len(spans) > 1:
        parts.append(f"<text x='{W - PAD}' y='{H - 8}' font-size='9' text-anchor='end'>"
                     f"{esc(spans[-1])}</text>")
    parts.append(f"<text x='2' y='{PAD - 6}' font-size='9'>{_num(hi)}</text>"
                 f"<text x='2' y='{H - PAD}' font-size='9'>{_num(lo)}</text></svg>")
    last = points[-1]
    bad = " class='fail'" if last["passed"] is False else ""
    caption = (f"<b>{esc(metric)}</b>: <span{bad}>{_num(last['value'])}</span> on "
               f"{esc(last['span'])}; bound {esc(last['op'])} {_num(last['bound'])}")
    return f"<figure data-metric='{esc(metric, quote=True)}'>{''.join(parts)}" \
           f"<figcaption>{caption}</figcaption></figure>"


def _audit_link(home: Path, cfg: PipelineConfig, rec: dict[str, Any], here: Path) -> str:
    run_id = (rec.get("production") or {}).get("run_id") or ""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("._")
    report = store.report_path(home, cfg.name, name) if name else None
    if report is None or not report.is_file():
        return "–"
    return f"<a class='audit' href='{esc(os.path.relpath(report, here), quote=True)}'>audit</a>"


def render(cfg: PipelineConfig, home: Path, recs: list[dict[str, Any]], here: Path) -> str:
    spans = [r["span"] for r in recs]
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>Monitoring of "
            f"{esc(cfg.name)}</title><style>{CSS}</style></head><body>")
    if not recs:
        return head + (f"<h1>Monitoring of {esc(cfg.name)}</h1><p>No span monitored yet.</p>"
                       "</body></html>")
    last = recs[-1]
    if last["alarms"]:
        answer = (f"<h1 class='no'>ALARM on span {esc(last['span'])}</h1><ul id='alarms'>"
                  + "".join(f"<li>{esc(a)}</li>" for a in last["alarms"]) + "</ul>")
    else:
        answer = f"<h1 class='ok'>No alarm on span {esc(last['span'])}</h1>"
    try:
        history = registry.shadow_history(cfg, home)
    except registry.RegistryError as exc:  # a damaged registry must not hide the monitoring
        history = {"pending": None, "events": [], "error": str(exc)}
    decided = _decisions(history)
    rows = []
    for rec in recs:
        prod = rec["production"]["version"]
        shadow = (rec.get("shadow") or {}).get("version")
        marks = decided.get(rec["span"], [])
        excluded = (rec.get("shadow") or {}).get("excluded")
        link = os.path.relpath(Path(rec["_uri"]) / store.MARKERS[store.Kind.MONITORING], here)
        rows.append(
            f"<tr class='{'alarm' if rec['alarms'] else 'ok'}' data-span='{esc(rec['span'], quote=True)}'>"
            f"<td>{esc(rec['span'])}</td><td class='version'>{esc(str(prod))}</td>"
            f"<td class='shadow'>{esc(str(shadow)) if shadow is not None else '–'}"
            + "".join(f" <b class='decision'>{esc(m)}</b>" for m in marks)
            + (f" <i title='{esc(excluded, quote=True)}'>(not counted)</i>" if excluded else "")
            + "</td>"
            f"<td>{rec['snapshot']['rows']}</td>"
            f"<td>{'<br>'.join(esc(a) for a in rec['alarms']) or 'none'}</td>"
            f"<td>{_audit_link(home, cfg, rec, here)} · "
            f"<a href='{esc(link, quote=True)}'>record</a></td></tr>")
    table = ("<h2>Spans</h2><table id='spans'><tr><th>span</th><th>production version</th>"
             "<th>shadow</th><th>rows</th><th>alarms</th><th>links</th></tr>"
             + "".join(rows) + "</table>")
    charts = [_shadow_section(history)]
    by_group = series(recs, cfg)
    for group, title in GROUPS:
        metrics = by_group.get(group) or {}
        if not metrics:
            continue
        charts.append(f"<h2 id='{group}'>{esc(title)}</h2>")
        charts += [chart(m, pts, spans) for m, pts in metrics.items()]
    return head + answer + table + "".join(charts) + "</body></html>"


def write(cfg: PipelineConfig, home: str | Path | None) -> Path:
    """Writes the dashboard from every monitoring record (atomically); returns its path."""
    home = resolve_home(home)
    path = dashboard_path(cfg, home)
    write_text_atomic(path, render(cfg, home, records(cfg, home), path.parent))
    return path
