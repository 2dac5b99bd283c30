"""Dates as people type them: a span is a calendar day written ``YYYY-MM-DD``.

The one parser of span dates, shared by the CLI (``--span``, ``--end``) and by trigger-time params
(:mod:`pipelines.params`). Plain Python: no Typer, no Airflow.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pipelines.errors import UsageError

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# JSON Schema's `format` for an ISO full-date (RFC 3339) is named after the type it holds; the
# Airflow UI shows a date picker for it. Named from the type, so no use case's column can match.
DATE_SCHEMA_FORMAT = dt.date.__name__
_DATE = re.compile(DATE_PATTERN)


def parse_date(value: Any, what: str = "the value") -> dt.date | None:
    """``value`` as a date: ``None`` or ``""`` give ``None``; a date or datetime is kept (its day).

    Args:
        value: ``YYYY-MM-DD`` text, a ``datetime.date``/``datetime.datetime``, or nothing.
        what: how the value is named in the error, e.g. ``"--span"`` or ``"param span"``.

    Raises:
        UsageError: the text is not a real calendar day in ``YYYY-MM-DD`` form.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value)
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{what} {value!r} is not a date in YYYY-MM-DD form") from exc
