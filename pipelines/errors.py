"""Expected failures and the CLI's exit codes (DESIGN.md, Contracts). Imports nothing of ours.

Every module raises these; the CLI maps ``exit_code``, the DAG turns them into a failed task with
one line saying why, and the runner records them in lineage.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_PROMOTED = 3
EXIT_DATA_REJECTED = 4


class PipelineError(Exception):
    """An expected failure with a message for a person; ``exit_code`` for the CLI."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result: dict[str, Any] = dict(result or {})


class UsageError(PipelineError):
    exit_code = EXIT_USAGE


class DataRejected(PipelineError):
    """Validation rejected a snapshot. ``result`` holds the validation record."""

    exit_code = EXIT_DATA_REJECTED


class NotPromoted(PipelineError):
    """The run completed but the candidate was not promoted. ``result`` holds the reasons."""

    exit_code = EXIT_NOT_PROMOTED
