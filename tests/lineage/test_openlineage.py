"""Every step emits OpenLineage START and COMPLETE/FAIL events that validate against the spec."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pipelines import runner
from pipelines.context import RunContext
from pipelines.errors import DataRejected
from pipelines.hashing import sha256_file
from pipelines.lineage.openlineage import dataset_id
from tests.lineage.conftest import run_fake_chain
from tests.lineage.openlineage_schema import validator

pytestmark = pytest.mark.usefixtures("fake_steps_wired")

AIRFLOW_TASK_RUN = "0193a8f2-4a1e-7c3d-9e11-2b7f0c6d5a01"
AIRFLOW_DAG_RUN = "0193a8f2-4a1e-7c3d-9e11-2b7f0c6d5a02"


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_events(events: list[dict]) -> None:
    """Schema-valid, and each run has exactly one START then one COMPLETE or FAIL."""
    v = validator()
    for event in events:
        errors = sorted(v.iter_errors(event), key=str)
        assert not errors, (event["job"]["name"], [e.message for e in errors][:5])
    by_run: dict[str, list[str]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(event["eventType"])
    for states in by_run.values():
        assert states in (["START", "COMPLETE"], ["START", "FAIL"])


def test_events_of_a_chain_validate_and_carry_the_artifacts(adult_cfg, store_home,
                                                            landing_files):
    done = run_fake_chain(adult_cfg, store_home, landing_files, 1, run_id="run-1")
    ctx = RunContext(run_id="run-2")
    with pytest.raises(DataRejected):
        runner.run_step("validate", adult_cfg, store_home, ctx,
                        snapshot_uri=done["ingest"]["uri"] + "-x", reject=True)
    events = read_events(store_home / "openlineage" / "events.jsonl")
    assert len(events) == 2 * 7
    check_events(events)
    ingest_done = next(e for e in events if e["job"]["name"] == "adult.ingest"
                       and e["eventType"] == "COMPLETE")
    assert ingest_done["job"]["namespace"] == "pipelines"
    names = {(d["namespace"], d["name"]) for d in ingest_done["inputs"]}
    assert names == {("file", f) for f in landing_files}
    first = next(d for d in ingest_done["inputs"] if d["name"] == landing_files[0])
    assert first["facets"]["pipelines_artifact"]["sha256"] == sha256_file(landing_files[0])
    assert first["facets"]["version"]["datasetVersion"] == sha256_file(landing_files[0])
    assert first["inputFacets"]["inputStatistics"]["rowCount"] == 5
    assert [f["name"] for f in first["facets"]["schema"]["fields"]] == adult_cfg.column_names
    snapshot = ingest_done["outputs"][0]
    assert snapshot["outputFacets"]["outputStatistics"]["rowCount"] == 10
    train_done = next(e for e in events if e["job"]["name"] == "adult.train"
                      and e["eventType"] == "COMPLETE")
    facet = train_done["run"]["facets"]["pipelines_execution"]
    assert facet["summary"]["metrics"] == {"auc": 0.91} and facet["parameters"]["seed"] == 1
    assert train_done["outputs"][0]["facets"]["pipelines_artifact"]["properties"]["auc"] == 0.91
    # outside Airflow every step's parent is the pipeline run, the same for all its steps
    parents = {e["run"]["facets"]["parent"]["run"]["runId"] for e in events
               if e["run"]["facets"]["pipelines_execution"]["run_id"] == "run-1"}
    assert len(parents) == 1 and uuid.UUID(parents.pop())
    failed = [e for e in events if e["eventType"] == "FAIL"]
    assert [e["job"]["name"] for e in failed] == ["adult.validate"]
    assert "rejected" in failed[0]["run"]["facets"]["errorMessage"]["message"]


def test_under_airflow_the_parent_is_the_provider_task_run(adult_cfg, store_home, landing_files):
    ctx = RunContext(
        run_id="scheduled__2026-11-20T00:00:00+00:00", dag_id="retrain_adult",
        dag_run_id="scheduled__2026-11-20T00:00:00+00:00", try_number=1,
        triggered_by="schedule",
        openlineage_parent_id=f"default/retrain_adult.ingest/{AIRFLOW_TASK_RUN}",
        openlineage_root_parent_id=f"default/retrain_adult/{AIRFLOW_DAG_RUN}")
    runner.run_step("ingest", adult_cfg, store_home, ctx, files=landing_files)
    events = read_events(store_home / "openlineage" / "events.jsonl")
    check_events(events)
    for event in events:
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == AIRFLOW_TASK_RUN
        assert (parent["job"]["namespace"], parent["job"]["name"]) == (
            "default", "retrain_adult.ingest")
        assert parent["root"]["run"]["runId"] == AIRFLOW_DAG_RUN
        assert (parent["root"]["job"]["namespace"], parent["root"]["job"]["name"]) == (
            "default", "retrain_adult")
        assert event["run"]["runId"] != AIRFLOW_TASK_RUN


def test_transport_comes_from_the_environment(adult_cfg, store_home, landing_files, tmp_path,
                                              monkeypatch):
    target = tmp_path / "elsewhere.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(target))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "prod-ml")
    runner.run_step("ingest", adult_cfg, store_home, RunContext(), files=landing_files)
    events = read_events(target)
    check_events(events)
    assert [e["job"]["namespace"] for e in events] == ["prod-ml", "prod-ml"]
    assert not (store_home / "openlineage" / "events.jsonl").exists()


def test_a_broken_transport_never_fails_the_step(adult_cfg, store_home, landing_files,
                                                 monkeypatch, tmp_path, caplog):
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(tmp_path / "not-a-dir" / "x"))
    result = runner.run_step("ingest", adult_cfg, store_home, RunContext(), files=landing_files)
    assert result["snapshot_id"]
    assert "could not emit the OpenLineage START event of adult.ingest" in caplog.text
    assert "could not emit the OpenLineage COMPLETE event" in caplog.text


@pytest.mark.parametrize("uri,expected", [
    ("/var/x/snap", ("file", "/var/x/snap")),
    ("file:///var/x/snap", ("file", "/var/x/snap")),
    ("gs://bucket/a/b", ("gs://bucket", "/a/b")),
])
def test_dataset_names_follow_the_naming_spec(uri, expected):
    assert dataset_id(uri) == expected
