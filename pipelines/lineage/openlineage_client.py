"""The OpenLineage events of :mod:`pipelines.lineage.openlineage` as openlineage-python objects,
emitted through its client: the path taken when OpenLineage is configured in the environment (a URL,
a config file, ``OPENLINEAGE_*`` variables), when this process already imported the client (an
Airflow worker), or when the client would add facets of its own (a git checkout with an origin).

Imported only on that path: ``openlineage.client`` costs about half a second of CPU to import (it
loads every transport), more than a reused step takes. The events built here are the very JSON that
:meth:`pipelines.lineage.openlineage.Emitter.event_dict` writes on the cheap path
(tests/lineage/test_openlineage_fast.py compares the two).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, ClassVar

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    RunFacet,
    dataset_version_dataset,
    error_message_run,
    input_statistics_input_dataset,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)
from openlineage.client.transport.file import FileConfig, FileTransport

from pipelines import store
from pipelines.lineage.common import json_safe, normalise_kind, summarise
from pipelines.lineage.openlineage_ids import (
    FACET_SCHEMA,
    PRODUCER,
    dataset_id,
    explicit_config,
    parent_ids,
    row_count,
    schema_fields,
)


@attr.define
class ArtifactDatasetFacet(DatasetFacet):
    """Our record of the artifact: kind, sha256 of its bytes, size and the step's properties."""

    kind: str
    sha256: str | None = None
    size: int | None = None
    properties: dict[str, Any] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA + "ArtifactDatasetFacet"


@attr.define
class PipelineRunFacet(RunFacet):
    """The execution as the lineage store holds it: run, code, config, parameters, outcome."""

    pipeline: str
    step: str
    execution_id: int | None
    run_id: str
    triggered_by: str | None = None
    dag_id: str | None = None
    dag_run_id: str | None = None
    try_number: int | None = None
    code_version: dict[str, Any] = attr.field(factory=dict)
    config_sha256: str | None = None
    parameters: dict[str, Any] = attr.field(factory=dict)
    summary: dict[str, Any] = attr.field(factory=dict)
    _additional_skip_redact: ClassVar[list[str]] = ["pipeline", "step", "run_id"]

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA + "PipelineRunFacet"


def make_client(home: Path) -> OpenLineageClient:
    """The environment's client if OpenLineage is configured there, else a file transport."""
    if explicit_config():
        return OpenLineageClient()
    path = store.openlineage_events(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))


def event(em: Any, state: str, result: dict[str, Any], error: str | None = None) -> RunEvent:
    """The run event of ``em``'s execution in ``state`` (``START``, ``COMPLETE``, ``FAIL``)."""
    ex = em.execution
    facets: dict[str, RunFacet] = {
        "pipelines_execution": PipelineRunFacet(
            pipeline=ex["pipeline"], step=ex["step"], execution_id=ex["id"],
            run_id=ex["run_id"], triggered_by=ex["triggered_by"], dag_id=ex["dag_id"],
            dag_run_id=ex["dag_run_id"], try_number=ex["try_number"],
            code_version=ex["code_version"] or {}, config_sha256=ex["config_sha256"],
            parameters=ex["parameters"], summary=summarise(result) if result else {}),
    }
    parent = parent_facet(em)
    if parent is not None:
        facets["parent"] = parent
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python")
    return RunEvent(
        eventType=RunState(state),
        eventTime=dt.datetime.now(dt.UTC).isoformat(),
        run=Run(runId=em.run_id, facets=facets),
        job=Job(namespace=em.namespace, name=f"{ex['pipeline']}.{ex['step']}", facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="RETRAIN_PIPELINES", jobType="TASK")}),
        inputs=[input_dataset(em, a) for a in result.get("inputs") or []],
        outputs=[output_dataset(em, a) for a in result.get("outputs") or []],
        producer=PRODUCER,
    )


def parent_facet(em: Any) -> parent_run.ParentRunFacet | None:
    """The Airflow task run when we know its ids, else the pipeline run of ``ctx.run_id``."""
    ids = parent_ids(em)
    if ids is None:
        return None
    (ns, name, run), root_ids = ids
    root = None
    if root_ids is not None:
        rns, rname, rrun = root_ids
        root = parent_run.Root(run=parent_run.RootRun(runId=rrun),
                               job=parent_run.RootJob(namespace=rns, name=rname))
    return parent_run.ParentRunFacet(run=parent_run.Run(runId=run),
                                     job=parent_run.Job(namespace=ns, name=name), root=root)


def dataset_facets(em: Any, record: dict[str, Any]) -> dict[str, DatasetFacet]:
    props = record.get("properties") or {}
    facets: dict[str, DatasetFacet] = {"pipelines_artifact": ArtifactDatasetFacet(
        kind=normalise_kind(record.get("kind")), sha256=record.get("sha256"),
        size=record.get("size"), properties=json_safe(props))}
    if record.get("sha256"):
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=record["sha256"])
    fields = schema_fields(em.cfg, record)
    if fields:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=[
            schema_dataset.SchemaDatasetFacetFields(**f) for f in fields])
    return facets


def input_dataset(em: Any, record: dict[str, Any]) -> InputDataset:
    ns, name = dataset_id(record["uri"])
    stats: dict[str, Any] = {}
    rows = row_count(record.get("properties") or {})
    if rows is not None or record.get("size") is not None:
        stats["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
            rowCount=rows, size=record.get("size"))
    return InputDataset(namespace=ns, name=name, facets=dataset_facets(em, record),
                        inputFacets=stats)


def output_dataset(em: Any, record: dict[str, Any]) -> OutputDataset:
    ns, name = dataset_id(record["uri"])
    stats: dict[str, Any] = {}
    rows = row_count(record.get("properties") or {})
    if rows is not None or record.get("size") is not None:
        stats["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=rows, size=record.get("size")))
    return OutputDataset(namespace=ns, name=name, facets=dataset_facets(em, record),
                         outputFacets=stats)


__all__ = ["ArtifactDatasetFacet", "PipelineRunFacet", "event", "make_client"]
