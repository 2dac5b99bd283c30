"""The cheap OpenLineage path writes exactly the lines the openlineage-python client writes.

Without any OpenLineage configuration, :class:`pipelines.lineage.openlineage.Emitter` builds its
events as plain JSON and appends them without importing the client (a reused step would otherwise
spend more on that import than on its work). Here every kind of event goes through both paths and
the lines must be equal but for the event time; and the cheap path is taken only when the client
would add nothing of its own.
"""

from __future__ import annotations

import json
import sys

import pytest

from pipelines import store
from pipelines.context import RunContext
from pipelines.lineage import openlineage, openlineage_client
from pipelines.lineage.openlineage import Emitter, local_events_file

AIRFLOW_TASK = "airflow-ns/retrain_adult.ingest/0193a8f2-4a1e-7c3d-9e11-2b7f0c6d5a01"
AIRFLOW_DAG = "airflow-ns/retrain_adult/0193a8f2-4a1e-7c3d-9e11-2b7f0c6d5a02"

EXECUTION = {"id": 7, "pipeline": "adult", "step": "ingest", "run_id": "run-1",
             "triggered_by": "test", "dag_id": None, "dag_run_id": None, "try_number": None,
             "code_version": {"git_sha": None, "dirty": False, "package_version": "0.1.0"},
             "config_sha256": "ab" * 32, "parameters": {"span": "2026-11-19", "none": None},
             "openlineage_run_id": openlineage.new_run_id()}

RESULT = {
    "status": "ok", "reused": True, "nested": {"a": None, "b": [None, {}, 1, {"c": None}]},
    "inputs": [
        {"kind": "source_file", "uri": "/landing/2026-11-19/part-0.csv", "sha256": "cd" * 32,
         "size": 120, "properties": {"rows": 5}},
        {"kind": "TransformGraph", "uri": "s3://bucket/transforms/x", "sha256": None,
         "properties": {"schema": {"age": "int", "label": "string"}}},
    ],
    "outputs": [
        {"kind": "snapshot", "uri": "/home/snapshots/adult/1234", "sha256": "ef" * 32,
         "size": 9, "properties": {"rows": {"train": 4, "eval": 1}, "when": None}},
        {"kind": "model", "uri": "file:///home/models/adult/9", "sha256": "01" * 32,
         "properties": {"schema": [{"name": "x", "type": "float"}, {"type": "no name"}],
                        "row_count": 3}},
        {"kind": "Report", "uri": "/home/report.html"},
    ],
}


def _lines(path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        event.pop("eventTime")
        out.append(event)
    return out


@pytest.mark.parametrize("ctx_fields", [
    {},
    {"openlineage_parent_id": AIRFLOW_TASK, "openlineage_root_parent_id": AIRFLOW_DAG},
    {"openlineage_parent_id": AIRFLOW_TASK},
    {"openlineage_parent_id": "not-a-parent-id"},
], ids=["pipeline-run-parent", "airflow-parent-and-root", "airflow-parent", "malformed-parent"])
def test_the_cheap_lines_equal_the_clients(adult_cfg, store_home, tmp_path, ctx_fields,
                                           monkeypatch):
    # this process imported the client, which alone would send both emitters through it
    monkeypatch.setattr(openlineage, "local_events_file", store.openlineage_events)
    # the cheap path is taken only where the client is not loaded, so its facets carry the
    # client's default producer; Airflow's OpenLineage provider, once imported in this process
    # (another module's test on the same xdist worker), sets its own producer process-wide
    from openlineage.client.constants import DEFAULT_PRODUCER
    from openlineage.client.generated import base as generated_base

    monkeypatch.setattr(generated_base, "PRODUCER", DEFAULT_PRODUCER)
    # the working directory (tmp_path) is a checkout without an origin: the client adds no
    # sourceCodeLocation facet wherever tmp_path lives
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]\n\tbare = false\n")
    ctx = RunContext(run_id="run-1", triggered_by="test", **ctx_fields)
    fast = Emitter(adult_cfg, tmp_path / "fast", ctx, EXECUTION)
    slow = Emitter(adult_cfg, tmp_path / "client", ctx, EXECUTION)
    slow.client = openlineage_client.make_client(slow.home)  # forces the client's path
    for em in (fast, slow):
        em.start()
        em.complete(RESULT)
        em.fail(RESULT, "DataRejected: 12 of 100 rows unexpected")
        em.fail({}, "RuntimeError: boom")
    assert fast.client is None and slow.client is not None
    client_path = tmp_path / "client" / "openlineage" / "events.jsonl"
    fast_path = tmp_path / "fast" / "openlineage" / "events.jsonl"
    assert client_path.is_file() and fast_path.is_file()
    client_lines, fast_lines = _lines(client_path), _lines(fast_path)
    assert len(client_lines) == 4
    assert fast_lines == client_lines
    # every facet and schema URL of the cheap path was compared at least once
    text = client_path.read_text()
    for url in openlineage.FACET_SCHEMAS.values():
        if "ParentRunFacet" in url and ctx_fields.get("openlineage_parent_id") == "not-a-parent-id":
            continue
        assert url in text


def test_the_event_time_is_the_clients_form(adult_cfg, store_home, tmp_path, monkeypatch):
    monkeypatch.setattr(openlineage, "local_events_file", store.openlineage_events)
    em = Emitter(adult_cfg, tmp_path, RunContext(), EXECUTION)
    em.start()
    (line,) = (tmp_path / "openlineage" / "events.jsonl").read_text().splitlines()
    time = json.loads(line)["eventTime"]
    assert time.endswith("+00:00") and "T" in time


def test_the_cheap_path_only_without_configuration(store_home, tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "openlineage.client", raising=False)
    home = tmp_path / "home"
    # a checkout without an origin, so the answer never depends on where tmp_path lives
    git = tmp_path / "repo" / ".git"
    git.mkdir(parents=True)
    (git / "config").write_text('[core]\n\tbare = false\n')
    monkeypatch.chdir(tmp_path / "repo")
    assert local_events_file(home) == home / "openlineage" / "events.jsonl"
    monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "ours")  # read by our code only
    assert local_events_file(home) is not None
    for key, value in (("OPENLINEAGE_URL", "http://marquez:5000"),
                       ("OPENLINEAGE__TRANSPORT__TYPE", "console"),
                       ("OPENLINEAGE_CLIENT_LOGGING", "DEBUG"),
                       ("OPENLINEAGE_DISABLED", "true")):
        with monkeypatch.context() as m:
            m.setenv(key, value)
            assert local_events_file(home) is None, key
    (tmp_path / "repo" / "openlineage.yml").write_text("transport: {type: console}\n")
    assert local_events_file(home) is None
    (tmp_path / "repo" / "openlineage.yml").unlink()
    assert local_events_file(home) is not None
    # a checkout with an origin: the client adds its sourceCodeLocation facet, so it emits
    (git / "config").write_text('[remote "origin"]\n\turl = https://example.com/repo.git\n')
    assert local_events_file(home) is None
    # the client already imported (an Airflow worker): it emits, whatever producer it was given
    (git / "config").write_text('[core]\n\tbare = false\n')
    assert local_events_file(home) is not None
    monkeypatch.setitem(sys.modules, "openlineage.client", object())
    assert local_events_file(home) is None


def test_run_ids_are_uuid7(monkeypatch):
    import uuid

    ids = [openlineage.new_run_id() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 50
    monkeypatch.setattr(openlineage.time, "time_ns", lambda: 1_700_000_000_000 * 10**6)
    from openlineage.client.uuid import generate_new_uuid

    ours = uuid.UUID(openlineage.new_run_id())
    theirs = generate_new_uuid(__import__("datetime").datetime.fromtimestamp(1_700_000_000))
    assert ours.int >> 80 == theirs.int >> 80  # the same 48-bit millisecond prefix
