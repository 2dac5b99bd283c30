"""A self-contained HTML page of a model's lineage, with the graph drawn as inline SVG.

Called by ``pipelines lineage model PIPELINE VERSION --html``. Needs nothing installed (no
Graphviz): executions and artifacts are laid out in columns by their depth in the graph, sources
on the left and the registry version on the right.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

COL_W, ROW_H, NODE_W, NODE_H, PAD = 230, 64, 200, 44, 20
COLOURS = {"execution": "#dbe8f6", "completed": "#dbe8f6", "failed": "#f6d5d5",
           "rejected": "#f6d5d5", "not_promoted": "#f6ecd0", "running": "#eeeeee"}
ARTIFACT_COLOUR = "#e7f3e1"


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def layout(chain: dict[str, Any]) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]]]:
    """Node positions (column, row) by longest path from a source, and the edges between them."""
    edges = []
    for x in chain["executions"]:
        edges += [(f"a{a}", f"x{x['id']}") for a in x["inputs"]]
        edges += [(f"x{x['id']}", f"a{a}") for a in x["outputs"]]
    nodes = [f"a{a['id']}" for a in chain["artifacts"]] + [f"x{x['id']}" for x in chain["executions"]]
    preds = defaultdict(list)
    for src, dst in edges:
        preds[dst].append(src)
    depth: dict[str, int] = {}

    def visit(node: str, trail: frozenset = frozenset()) -> int:
        if node not in depth:
            parents = [p for p in preds[node] if p not in trail]
            depth[node] = 1 + max((visit(p, trail | {node}) for p in parents), default=-1)
        return depth[node]

    for n in nodes:
        visit(n)
    rows: dict[int, int] = defaultdict(int)
    pos = {}
    for n in sorted(nodes, key=lambda n: (depth[n], n[0], int(n[1:]))):
        pos[n] = (depth[n], rows[depth[n]])
        rows[depth[n]] += 1
    return pos, edges


def svg(chain: dict[str, Any]) -> str:
    pos, edges = layout(chain)
    arts = {f"a{a['id']}": a for a in chain["artifacts"]}
    execs = {f"x{x['id']}": x for x in chain["executions"]}
    width = PAD * 2 + COL_W * (1 + max((c for c, _ in pos.values()), default=0))
    height = PAD * 2 + ROW_H * (1 + max((r for _, r in pos.values()), default=0))

    def xy(n: str) -> tuple[int, int]:
        c, r = pos[n]
        return PAD + c * COL_W, PAD + r * ROW_H

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11"><defs><marker id="arrow" viewBox="0 0 10 10" '
             f'refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
             f'<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for src, dst in edges:
        (x1, y1), (x2, y2) = xy(src), xy(dst)
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H // 2, y2 + NODE_H // 2
        mid = (x1 + x2) / 2
        parts.append(f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" '
                     f'stroke="#777" marker-end="url(#arrow)"/>')
    for n in pos:
        x, y = xy(n)
        if n in execs:
            e = execs[n]
            fill, rx = COLOURS.get(e["status"], COLOURS["execution"]), 2
            title, sub = f"{e['step']} ({e['status']})", e["started"] or ""
            tip = json.dumps({k: e[k] for k in ("run_id", "code_version", "parameters")},
                             default=str)
        else:
            a = arts[n]
            fill, rx = ARTIFACT_COLOUR, 14
            title, sub = a["kind"], Path(a["uri"]).name or a["uri"]
            tip = f"{a['uri']}\nsha256 {a['sha256']}\nsize {a['size']}"
        parts.append(f'<g><title>{_esc(tip)}</title><rect x="{x}" y="{y}" width="{NODE_W}" '
                     f'height="{NODE_H}" rx="{rx}" fill="{fill}" stroke="#444"/>'
                     f'<text x="{x + 8}" y="{y + 17}" font-weight="bold">{_esc(title)[:34]}</text>'
                     f'<text x="{x + 8}" y="{y + 33}">{_esc(sub)[:36]}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(
        f"<td>{_esc(v if isinstance(v := r.get(c), str | int | float | None) else json.dumps(v))}"
        f"</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(chain: dict[str, Any]) -> str:
    """The page: graph, promotion, blessing, validation, executions and source files."""
    title = f"Lineage of {chain['pipeline']} version {chain['version']}"
    sections = [
        ("Graph", f"<div style='overflow-x:auto'>{svg(chain)}</div>"),
        ("Promotion", _table(chain["promotion"], ["version", "promoted", "previous_version",
                                                  "time", "triggered_by", "reasons"])),
        ("Blessing", _table(chain["blessing"], ["blessed", "reasons", "baseline", "metrics"])),
        ("Validation", _table(chain["validation"], ["status", "snapshot_uri", "expectations",
                                                    "failures"])),
        ("Executions", _table(chain["executions"], [
            "step", "status", "started", "ended", "run_id", "dag_id", "dag_run_id",
            "try_number", "triggered_by", "code_version", "config_sha256", "parameters"])),
        ("Source files", _table(chain["source_files"], ["role", "uri", "size", "sha256"])),
        ("Artifacts", _table(chain["artifacts"], ["id", "kind", "uri", "size", "sha256"])),
    ]
    body = "".join(f"<h2>{_esc(name)}</h2>{content}" for name, content in sections)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top;"
             "max-width:40em;word-break:break-all}th{background:#f3f3f3}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{style}</style></head><body><h1>{_esc(title)}</h1>{body}</body></html>\n")
