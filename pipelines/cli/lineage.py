"""``pipelines lineage model|data|verify|runs``: the auditor's read-only questions.

Every command reads the lineage store of --home (or ``PIPELINES_LINEAGE_URL``) read-only and never
writes to it. ``--json`` prints one JSON document; ``model --html`` prints a self-contained page
with the graph drawn (or writes it with ``--out``). ``verify`` exits 1 when an artifact's bytes no
longer match their recorded sha256.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli.options import JsonOpt, PipelineArg, VersionArg, emit, handle_errors, home
from pipelines.errors import EXIT_FAILURE

app = typer.Typer(
    help="Read the lineage store: a model's upstream chain, a file's downstream models, "
    "re-hash a model's chain, list runs and their outcome. Read-only.",
    no_args_is_help=True,
)


def _when(x: dict[str, Any]) -> str:
    return f"{x['started']} → {x['ended'] or '(not ended)'}"


def _model_text(chain: dict[str, Any]) -> str:
    lines = [f"{chain['pipeline']} version {chain['version']}: {chain['model_version']['uri']}"]
    for p in chain["promotion"]:
        lines.append(f"  promoted {p.get('time')} by {p.get('triggered_by')} run {p.get('run_id')}"
                     f" (previous version {p.get('previous_version')})")
    for b in chain["blessing"]:
        lines.append(f"  blessed={b.get('blessed')} reasons: {'; '.join(b.get('reasons') or [])}")
        lines.append(f"    baseline: {json.dumps(b.get('baseline'))}")
    for v in chain["validation"]:
        exp = v.get("expectations") or {}
        lines.append(f"  validation {v['status']}: {exp.get('run')} expectations, "
                     f"{exp.get('failed')} failed; {v.get('snapshot_uri')}")
    lines.append("  executions:")
    for x in chain["executions"]:
        code = x["code_version"] or {}
        lines.append(f"    #{x['id']} {x['step']} {x['status']} {_when(x)} run {x['run_id']} "
                     f"code {code.get('git_sha')}{' (dirty)' if code.get('dirty') else ''} "
                     f"params {json.dumps(x['parameters'], sort_keys=True)}")
    for gap in chain.get("gaps") or []:
        lines.append(f"  BROKEN LINK: {gap['message']}")
    lines.append("  source files:")
    for f in chain["source_files"]:
        lines.append(f"    [{f['role']}] {f['uri']} size {f['size']} sha256 {f['sha256']}")
    return "\n".join(lines)


def _data_text(found: dict[str, Any]) -> str:
    lines = [f"{m['kind']} {m['uri']} sha256 {m['sha256']}" for m in found["matches"]]
    for kind, arts in sorted(found["downstream"].items()):
        lines.append(f"  {kind}:")
        lines += [f"    {a['uri']} sha256 {a['sha256']}" for a in arts]
    for e in found["evaluations"]:
        lines.append(f"  evaluation #{e['execution']} blessed={e.get('blessed')}: "
                     f"{'; '.join(e.get('reasons') or [])}")
    for p in found["promotions"]:
        lines.append(f"  promotion #{p['execution']} {p['status']} version {p.get('version')} "
                     f"promoted={p.get('promoted')}")
    return "\n".join(lines)


def _verify_text(report: dict[str, Any]) -> str:
    lines = [f"{report['pipeline']} version {report['version']}: "
             f"{'all artifacts match' if report['ok'] else 'CHANGED ARTIFACTS'} {report['counts']}"]
    for c in report["artifacts"]:
        if c["status"] != "ok":
            lines.append(f"  {c['status']}: {c['kind']} {c['uri']} recorded {c['recorded']} "
                         f"now {c['actual']}")
    return "\n".join(lines)


def _runs_text(runs: dict[str, Any]) -> str:
    lines = []
    for r in runs["runs"]:
        lines.append(f"{r['started']} {r['run_id']} [{r['triggered_by']}] {r['outcome']}"
                     + (f" version {r['version']}" if r["version"] else ""))
        lines += [f"    {why}" for why in r["why"]]
    return "\n".join(lines) or f"no runs of {runs['pipeline']} recorded"


@app.command("model")
@handle_errors
def model(pipeline: PipelineArg, version: VersionArg, as_json: JsonOpt = False,
          as_html: Annotated[bool, typer.Option("--html", help="an HTML page with the graph")]
          = False,
          out: Annotated[Path | None, typer.Option(help="write the page/JSON to this file")]
          = None) -> None:
    """The upstream chain of a registry version, down to the landing files."""
    from pipelines.lineage.html import render
    from pipelines.lineage.query import model_lineage

    chain = model_lineage(home(), pipeline, version)
    if as_html:
        text = render(chain)
    elif as_json:
        text = json.dumps(chain, indent=2, sort_keys=True, default=str)
    else:
        text = _model_text(chain)
    if out:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)
    else:
        typer.echo(text)


@app.command("data")
@handle_errors
def data(ref: Annotated[str, typer.Argument(help="source file URI or sha256")],
         as_json: JsonOpt = False) -> None:
    """Every snapshot, model, evaluation and promotion downstream of a source file."""
    from pipelines.lineage.query import data_lineage

    found = data_lineage(home(), ref)
    emit(found, as_json, _data_text(found))


@app.command("verify")
@handle_errors
def verify(pipeline: PipelineArg, version: VersionArg, as_json: JsonOpt = False) -> None:
    """Re-hash every artifact of a version's chain; exit 1 if any bytes changed."""
    from pipelines.lineage.audit import verify_model

    report = verify_model(home(), pipeline, version)
    emit(report, as_json, _verify_text(report))
    if not report["ok"]:
        raise typer.Exit(EXIT_FAILURE)


@app.command("runs")
@handle_errors
def runs(pipeline: PipelineArg, as_json: JsonOpt = False,
         limit: Annotated[int | None, typer.Option(min=1, help="newest N runs")] = None) -> None:
    """Runs with their outcome: promoted, not promoted and why, data rejected and why."""
    from pipelines.lineage.audit import list_runs

    found = list_runs(home(), pipeline, limit)
    emit(found, as_json, _runs_text(found))
