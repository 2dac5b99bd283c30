"""``pipelines lineage model|data|verify|export|runs``: the auditor's read-only questions.

Every command reads the lineage store of --home (or ``PIPELINES_LINEAGE_READ_URL``, else
``PIPELINES_LINEAGE_URL``) read-only and never writes to it; ``auditor-role`` is the one setup
command, run once by the database's administrator. ``--json`` prints one JSON document; ``model
--html`` prints a self-contained page with the graph drawn (or writes it with ``--out``).
``verify`` exits 1 when an artifact of the version's chain is missing, unchecked or changed, or when
the store's hash chain is broken (it names the first broken record) or no longer holds the head
given with ``--head``; ``export`` writes the chain and its head hash for the auditor to keep.
"""

from __future__ import annotations

import json
import os
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
    lines = []
    if report["version"] is not None:
        lines.append(f"{report['pipeline']} version {report['version']}: "
                     f"{'all artifacts match' if not report['failed'] else 'ARTIFACTS NOT PROVEN'}"
                     f" {report['counts']}")
    for c in report["artifacts"]:
        if c["status"] != "ok":
            lines.append(f"  {c['status']}: {c['kind']} {c['uri']} recorded {c['recorded']} "
                         f"now {c['actual']}")
    chain = report["chain"]
    head = chain["head"] or {}
    if chain["ok"]:
        lines.append(f"{report['pipeline']} lineage chain intact: {chain['records']} records, "
                     f"head {head.get('seq')} {head.get('record_sha256')}")
    else:
        lines.append(f"{report['pipeline']} lineage chain BROKEN: "
                     f"{chain['first_broken']['message']}")
        lines += [f"  {p['message']}" for p in chain["problems"][1:]]
    return "\n".join(lines)


def _runs_text(runs: dict[str, Any]) -> str:
    lines = []
    for r in runs["runs"]:
        lines.append(f"{r['started']} {r['run_id']} [{r['triggered_by']}] {r['outcome']}"
                     + (f" version {r['version']}" if r["version"] else ""))
        lines += [f"    {why}" for why in r["why"]]
        if (decided := r.get("approval")) and decided["reason"] not in r["why"]:
            lines.append(f"    {decided['reason']}")  # issue 12: who approved, when
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
def verify(pipeline: PipelineArg,
           version: Annotated[str | None, typer.Argument(
               help="registry version whose artifacts to re-hash; omitted: the chain only")] = None,
           head: Annotated[str | None, typer.Option(
               help="a head hash from `lineage export` (or the exported file): the chain must "
                    "still hold it")] = None,
           as_json: JsonOpt = False) -> None:
    """Re-hash every artifact of a version's chain and check the store's hash chain; exit 1 if
    an artifact is missing, unchecked or changed, or a record was edited."""
    from pipelines.lineage.audit import verify_model

    if head and Path(head).is_file():
        head = (json.loads(Path(head).read_text()).get("head") or {}).get("record_sha256") or head
    report = verify_model(home(), pipeline, version, head=head)
    emit(report, as_json, _verify_text(report))
    if not report["ok"]:
        raise typer.Exit(EXIT_FAILURE)


@app.command("export")
@handle_errors
def export(pipeline: PipelineArg,
           out: Annotated[Path | None, typer.Option(help="write the chain to this file")] = None
           ) -> None:
    """Write the pipeline's hash chain (every record with what it seals) and its head hash, for
    the auditor to keep away from the store; `verify --head` later proves nothing before it was
    rewritten. Refused (exit 1) when the chain is broken now."""
    from pipelines.lineage.audit import export as export_chain

    chain = export_chain(home(), pipeline)
    text = json.dumps(chain, indent=2, sort_keys=True, default=str)
    if out:
        out.write_text(text + "\n")
        typer.echo(f"wrote {out}: {len(chain['records'])} records, head "
                   f"{chain['head']['seq']} {chain['head']['record_sha256']}", err=True)
    else:
        typer.echo(text)


@app.command("auditor-role")
@handle_errors
def auditor_role(
        role: Annotated[str, typer.Argument(help="the auditor's role name, e.g. lineage_auditor")],
        password_env: Annotated[str, typer.Option(
            help="environment variable holding the role's password")] = "LINEAGE_AUDITOR_PASSWORD",
        writer: Annotated[str | None, typer.Option(
            help="role that owns the tables [default: the user of PIPELINES_LINEAGE_URL]")] = None
        ) -> None:
    """Setup, run once by the database administrator: create (or reset) a PostgreSQL role that
    can only read the lineage store (PIPELINES_LINEAGE_URL), for PIPELINES_LINEAGE_READ_URL."""
    from pipelines.errors import UsageError
    from pipelines.lineage.roles import create_auditor_role
    from pipelines.lineage.store import URL_ENV, database_url

    url = os.environ.get(URL_ENV)
    if not url:
        raise UsageError(f"set {URL_ENV} to the PostgreSQL store (an administrator's URL)")
    read_url = create_auditor_role(database_url(home()), role, os.environ.get(password_env, ""),
                                   writer)
    typer.echo(f"role {role} reads the store and nothing else; give the auditor "
               f"PIPELINES_LINEAGE_READ_URL={read_url} with the password in place")


@app.command("runs")
@handle_errors
def runs(pipeline: PipelineArg, as_json: JsonOpt = False,
         limit: Annotated[int | None, typer.Option(min=1, help="newest N runs")] = None) -> None:
    """Runs with their outcome: promoted, not promoted and why, data rejected and why."""
    from pipelines.lineage.audit import list_runs

    found = list_runs(home(), pipeline, limit)
    emit(found, as_json, _runs_text(found))
