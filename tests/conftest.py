"""Shared fixtures: the real Adult data staged as spans, and the pipeline chain run once a session.

Each chain fixture runs a real step (Beam, TFT, TensorFlow, TFMA) the first time a test asks for it
and is reused by every later test of the session, so the suite pays for each step once.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from pipelines.config import REPO_ROOT, load_config  # noqa: E402
from pipelines.context import RunContext

SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "adult"
RAW_DIR = SHARED_DATA / "raw"
END_DATE = dt.date(2026, 11, 20)  # the last demo span in tests: fixed, so tests never depend on today
SPAN_DATES = [END_DATE - dt.timedelta(days=i) for i in range(6, -1, -1)]


# pytest-xdist (`make test` runs `-n 2 --dist loadgroup --no-loadscope-reorder`): every test gets an
# xdist group, and a group runs on one worker, so each session or module fixture is built once.
# Tests that share an expensive session fixture form one group across modules (first match wins);
# every other test is grouped with its module (module fixtures: one DAG run, one stack).
CHAIN_FIXTURES = {"staged", "snapshot", "golden", "transformed", "trained"}
XDIST_GROUPS = (
    ("airflow-scheduler", lambda item: "scheduler" in item.fixturenames),
    ("adult-chain", lambda item: bool(CHAIN_FIXTURES & set(item.fixturenames))),
    ("servers", lambda item: item.path.parent.name == "deploy"),
)
# Groups are handed out in collection order, a new one to whichever worker is nearly free: the
# longest go first (fresh-clone run, 2026-11-23: the shared scheduler 16 min, the chain 13 min, the
# server stacks 7 min; the other modules 13 min in all), then every other module in its usual order.
FIRST = ("airflow-scheduler", "adult-chain", "servers")


def _group(item) -> str:
    name = next((name for name, matches in XDIST_GROUPS if matches(item)), None)
    return name or item.nodeid.split("::", 1)[0]


def _suffix_node_id(item, group: str) -> None:
    """xdist's controller reads a test's group from a ``@group`` suffix of its node id, which
    xdist 3.8 writes to ``item._nodeid``. pytest 9.2 keeps node ids structured in ``item._id``
    and no longer reads ``_nodeid``, so every group is silently ignored and a fixture is built on
    both workers (pytest-dev/pytest-xdist#1386, fix pending in #1388). Set the suffix on the
    structured id here; on an older pytest xdist's own hook does it."""
    node_id = getattr(item, "_id", None)
    if node_id is not None and not str(node_id).endswith(f"@{group}"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(f"{node_id}@{group}")


@pytest.hookimpl(tryfirst=True)  # before xdist's worker hook turns the marks into node ids
def pytest_collection_modifyitems(config, items):
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers by --dist loadgroup
        return
    groups = {}
    for item in items:
        groups[item] = _group(item)
        item.add_marker(pytest.mark.xdist_group(groups[item]))
        _suffix_node_id(item, groups[item])

    def rank(item):
        group = groups[item]
        return FIRST.index(group) if group in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: within a group and among the rest, the collection order


@pytest.fixture(scope="session")
def adult_cfg():
    return load_config(REPO_ROOT / "configs" / "adult.yaml")


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory) -> Path:
    """An artifact store shared by the chain fixtures of one session."""
    return tmp_path_factory.mktemp("pipelines_home")


@pytest.fixture(scope="session")
def ctx() -> RunContext:
    return RunContext(run_id="pytest-session", triggered_by="test")


@pytest.fixture(scope="session")
def staged(adult_cfg, pipeline_home):
    """The 7 demo spans and the golden set, from ../shared/data/adult/raw."""
    from pipelines.sample_data import stage_sample_data

    return stage_sample_data(adult_cfg, pipeline_home, END_DATE, days=7, from_dir=RAW_DIR)


@pytest.fixture(scope="session")
def snapshot(adult_cfg, pipeline_home, ctx, staged):
    """Ingest of the 7-span window ending at END_DATE, validated and accepted."""
    from pipelines.ingest import ingest
    from pipelines.validate import validate

    result = ingest(adult_cfg, pipeline_home, ctx, span=END_DATE, window=7)
    result["validation"] = validate(adult_cfg, pipeline_home, ctx, snapshot_uri=result["uri"])
    return result


@pytest.fixture(scope="session")
def golden(adult_cfg, pipeline_home, ctx, staged):
    """The golden evaluation set (adult.test) as a snapshot with a single `test` split."""
    from pipelines.ingest import ingest

    return ingest(adult_cfg, pipeline_home, ctx, golden=True)


@pytest.fixture(scope="session")
def transformed(adult_cfg, pipeline_home, ctx, snapshot):
    from pipelines.transform import transform

    return transform(adult_cfg, pipeline_home, ctx, snapshot_uris=[snapshot["uri"]])


@pytest.fixture(scope="session")
def trained(adult_cfg, pipeline_home, ctx, transformed):
    from pipelines.train import train

    return train(adult_cfg, pipeline_home, ctx, transform_uri=transformed["transform_uri"])
