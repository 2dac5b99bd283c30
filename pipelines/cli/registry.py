"""``pipelines registry list|show|rollback|repair``: read the model registry, roll production back.

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
    shadow = registry.shadow_history(cfg, home())  # issue 12: the shadow policy's decisions
    if shadow["pending"]:
        p = shadow["pending"]
        lines.append(f"shadow: version {p['version']} pending since {p['since']}, judged against "
                     f"production {p['baseline']}")
    lines += ["shadow history: " + registry.describe_shadow_event(h) for h in shadow["events"]]
    emit({"pipeline": cfg.name, "versions": versions, "shadow": shadow}, as_json,
         "\n".join(lines) or f"registry {cfg.name} is empty")


@app.command("show")
@handle_errors
def registry_show(config: ConfigArg, ref: Annotated[str, typer.Argument(
        help="version number or alias (production, previous, shadow)")] = "production",
        as_json: JsonOpt = False) -> None:
    """Show one version (by number or alias) with its registry record."""
    from pipelines import registry

    emit(registry.show(load(config), home(), ref), as_json)


@app.command("rollback")
@handle_errors
def registry_rollback(config: ConfigArg, reason: Annotated[str, typer.Option(
        help="why, recorded with who ran it in the registry history and lineage")] = "",
        to: Annotated[int | None, typer.Option(
            "--to", help="the registered version to make production (default: the one that was "
                         "production before the current one)")] = None,
        as_json: JsonOpt = False) -> None:
    """Make an earlier version production again (recorded as a `rollback` step in lineage).

    Without --to: the version that was production before the current one; the current one leaves
    the production history, so a second rollback goes one further back.
    """
    from pipelines.errors import UsageError
    from pipelines.runner import run_step

    if not reason.strip():
        raise UsageError("--reason is required: say why production changes (it is recorded, with "
                         "who ran the command, in the registry history and in lineage)")
    kwargs = {"reason": reason, **({"to": to} if to is not None else {})}
    result = run_step("rollback", load(config), home(), context(), **kwargs)
    emit(result, as_json, f"production is version {result['production']['version']} "
         f"(rolled back from {result['rolled_back_from']})")


@app.command("repair")
@handle_errors
def registry_repair(config: ConfigArg, as_json: JsonOpt = False) -> None:
    """Rebuild a missing or damaged aliases.json from the registry's newest history entry."""
    from pipelines import registry

    result = registry.repair(load(config), home())
    emit(result, as_json, f"rebuilt {result['repaired']} from {result['from']}: production is "
         f"version {result['production']}")
