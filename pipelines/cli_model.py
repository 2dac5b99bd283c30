"""CLI commands (filled in by the owning issue); registered by pipelines.cli."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `pipelines` app."""
