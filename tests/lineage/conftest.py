"""Fixtures of the lineage tests: a clean store per test and the synthetic steps wired in."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from pipelines import runner
from pipelines.context import RunContext
from pipelines.lineage.store import dispose_engines
from tests.lineage import fake_steps


@pytest.fixture
def store_home(tmp_path, monkeypatch) -> Path:
    """An empty artifact store whose lineage goes to <home>/lineage.db and events.jsonl."""
    for key in list(os.environ):
        if key.startswith("OPENLINEAGE") or key == "PIPELINES_LINEAGE_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray openlineage.yml in the working directory
    dispose_engines()
    yield tmp_path / "home"
    dispose_engines()


@pytest.fixture
def fake_steps_wired(monkeypatch):
    monkeypatch.setattr(runner, "STEPS", {**runner.STEPS, **fake_steps.STEPS})


@pytest.fixture
def landing_files(tmp_path) -> list[str]:
    files = []
    for day in ("2026-11-18", "2026-11-19"):
        f = tmp_path / "landing" / day / "part-0.csv"
        f.parent.mkdir(parents=True)
        f.write_text("".join(f"{i},{day},x\n" for i in range(5)))
        files.append(str(f))
    return files


def run_fake_chain(cfg, home: Path, files: list[str], version: int, *, run_id: str,
                   blessed: bool = True, baseline: str | None = None, seed: int = 1,
                   transform_kwargs: dict | None = None, **ctx_fields) -> dict:
    """ingest → validate → transform → train → evaluate → promote through runner.run_step."""
    ctx = RunContext(run_id=run_id, triggered_by="test", **ctx_fields)
    done = {"ctx": ctx}
    done["ingest"] = runner.run_step("ingest", cfg, home, ctx, files=files,
                                     span=dt.date(2026, 11, 19))
    uri = done["ingest"]["uri"]
    done["validate"] = runner.run_step("validate", cfg, home, ctx, snapshot_uri=uri)
    done["transform"] = runner.run_step("transform", cfg, home, ctx, snapshot_uris=[uri],
                                        **(transform_kwargs or {}))
    done["train"] = runner.run_step("train", cfg, home, ctx,
                                    transform_uri=done["transform"]["transform_uri"],
                                    started_on=dt.date(2026, 11, 20), seed=seed)
    done["evaluate"] = runner.run_step("evaluate", cfg, home, ctx,
                                       model_uri=done["train"]["model_uri"], snapshot_uris=[uri],
                                       blessed=blessed, baseline_uri=baseline)
    done["promote"] = runner.run_step("promote", cfg, home, ctx,
                                      model_uri=done["train"]["model_uri"],
                                      evaluation_uri=done["evaluate"]["evaluation_uri"],
                                      version=version)
    return done
