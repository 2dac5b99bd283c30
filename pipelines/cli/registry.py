"""``pipelines registry list|show|rollback``: read the model registry and roll production back.

``rollback`` runs through ``runner.run_step``, so it is recorded in lineage as a ``rollback`` step
with the versions it moved; ``--json`` prints the result as one JSON document on stdout.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli.options import ConfigArg, JsonOpt, context, emit, handle_errors, home, load

app = typer.Typer(help="Read the model registry and roll production back.", no_args_is_help=True)


@app.command("list")
@handle_errors
def registry_list(config: ConfigArg, as_json: JsonOpt = False) -> None:
    """List registered versions and their aliases."""
    from pipelines import registry

    cfg = load(config)
    versions = registry.list_versions(cfg, home())
    lines = [f"{v['version']:>4}  {','.join(v['aliases']) or '-':<20} {v.get('registered_at', '')}"
             f"  {v.get('model_uri', '')}" for v in versions]
    emit({"pipeline": cfg.name, "versions": versions}, as_json,
         "\n".join(lines) or f"registry {cfg.name} is empty")


@app.command("show")
@handle_errors
def registry_show(config: ConfigArg, ref: Annotated[str, typer.Argument(
        help="version number or alias (production, previous)")] = "production",
        as_json: JsonOpt = False) -> None:
    """Show one version (by number or alias) with its registry record."""
    from pipelines import registry

    emit(registry.show(load(config), home(), ref), as_json)


@app.command("rollback")
@handle_errors
def registry_rollback(config: ConfigArg, reason: Annotated[str, typer.Option(
        help="why, recorded in the registry history and lineage")] = "",
        as_json: JsonOpt = False) -> None:
    """Make `previous` production again (recorded as a `rollback` step in lineage)."""
    from pipelines.runner import run_step

    result = run_step("rollback", load(config), home(), context(), reason=reason)
    emit(result, as_json, f"production is version {result['production']['version']} again "
         f"(rolled back from {result['rolled_back_from']})")
