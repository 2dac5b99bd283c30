"""Runs one step with its lineage: the single entry point the CLI, `pipelines run` and DAG tasks use.

Each step function has the signature ``fn(cfg, home, ctx, **kwargs) -> dict`` and returns a small
JSON-serialisable result holding ``inputs`` and ``outputs`` (lists of ``artifact`` records)
plus step-specific keys. Expected failures raise ``PipelineError`` subclasses whose
``result`` carries the artifacts written so far (a rejected validation's report, say).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.context import RunContext

STEPS: dict[str, str] = {
    "ingest": "pipelines.ingest:ingest",
    "validate": "pipelines.validate:validate",
    "transform": "pipelines.transform:transform",
    "train": "pipelines.train:train",
    "evaluate": "pipelines.evaluate:evaluate",
    "promote": "pipelines.promote:promote",
    "report": "pipelines.report:report",
    "rollback": "pipelines.registry:rollback_step",
    "monitor": "pipelines.monitor:monitor",  # issue 12
    "shadow": "pipelines.shadow:decide_step",  # issue 12: promote or drop the shadow
    "approval": "pipelines.approval:record_decision",  # issue 12: approval policy
}


def step_function(step: str):
    module, _, name = STEPS[step].partition(":")
    return getattr(importlib.import_module(module), name)


def run_step(step: str, cfg: PipelineConfig, home: Path, ctx: RunContext, **kwargs: Any) -> dict:
    """Runs ``step`` and records its execution, inputs and outputs in the lineage store."""
    from pipelines import lineage

    fn = step_function(step)
    with lineage.execution(cfg, home, step, ctx, params=kwargs) as execution:
        if getattr(fn, "records_lineage", False):  # promote, rollback: record, then move aliases
            result = fn(cfg, home, ctx, execution=execution, **kwargs)
        else:
            result = fn(cfg, home, ctx, **kwargs)
        if not execution.closed:
            execution.complete(result)
    return result
