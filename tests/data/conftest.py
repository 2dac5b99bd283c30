"""Fixtures for the data-contract tests: a real Adult span to corrupt, and ingest + validate of it.

Each bad input is a real span CSV copied and modified into its own landing folder, ingested once
into its own artifact store (so there is no drift baseline unless the test makes one) and validated.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipelines.errors import DataRejected
from tests.conftest import END_DATE

BAD_SPAN = END_DATE  # the span date the corrupted copies are staged under


@pytest.fixture(scope="session")
def span_text(staged) -> str:
    """The text of the first real demo span (4,652 rows of adult.data, with header)."""
    return Path(staged["files"][0]["uri"]).read_text()


@pytest.fixture(scope="session")
def span_rows(span_text) -> list[list[str]]:
    """Header and rows of the first real span, split on commas (Adult needs no CSV quoting)."""
    return [line.split(",") for line in span_text.splitlines()]


def to_csv(rows: list[list[str]]) -> str:
    return "".join(",".join(r) + "\n" for r in rows)


def stage(landing: Path, day: dt.date, content: str | bytes) -> Path:
    path = landing / "adult" / day.isoformat() / "part-00000.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


class Gate:
    """Stages a file as a span, ingests it, and validates the snapshot in one artifact store."""

    def __init__(self, cfg, root: Path, ctx):
        self.cfg, self.home, self.ctx = cfg, root / "home", ctx
        self.landing = root / "landing"

    def ingest(self, content: str | bytes, day: dt.date = BAD_SPAN, cfg=None) -> dict:
        from pipelines.ingest import ingest

        stage(self.landing, day, content)
        return ingest(cfg or self.cfg, self.home, self.ctx, span=day, landing=self.landing)

    def validate(self, snapshot: dict, cfg=None) -> dict:
        from pipelines.validate import validate

        return validate(cfg or self.cfg, self.home, self.ctx, snapshot_uri=snapshot["uri"])

    def reject(self, content: str | bytes, day: dt.date = BAD_SPAN, cfg=None) -> DataRejected:
        """Ingests and validates ``content``; returns the rejection (fails if it is accepted)."""
        snap = self.ingest(content, day, cfg)
        with pytest.raises(DataRejected) as info:
            self.validate(snap, cfg)
        return info.value


@pytest.fixture
def gate(adult_cfg, tmp_path, ctx) -> Gate:
    return Gate(adult_cfg, tmp_path, ctx)
