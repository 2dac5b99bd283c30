"""OpenLineage START, COMPLETE and FAIL run events for every step, beside the lineage store.

Called by :mod:`pipelines.lineage.record` (never the reverse). The transport is configured the
openlineage-python way (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG`` or an ``openlineage.yml``,
``OPENLINEAGE__TRANSPORT__*``, ``OPENLINEAGE_DISABLED``); with none of those set, events are
appended as JSON lines to ``<home>/openlineage/events.jsonl``. Emission never fails a step: a
transport error is logged.

Job: namespace ``OPENLINEAGE_NAMESPACE`` (default ``pipelines``), name ``<pipeline>.<step>``.
Parent run: under Airflow the task's OpenLineage ids from ``RunContext.openlineage_parent_id`` and
``openlineage_root_parent_id`` (``namespace/job_name/run_id``, as the provider's
``lineage_parent_id`` and ``lineage_root_parent_id`` macros build them), so the provider's task
events and ours share parent run ids; outside Airflow the pipeline run (``RunContext.run_id``).
Datasets: namespace and name from the artifact URI (``file`` + absolute path for local paths,
``scheme://authority`` + path otherwise), with sha256, size, row counts, schema and metrics facets.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

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
from openlineage.client.uuid import generate_new_uuid

from pipelines import store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext
from pipelines.lineage.store import json_safe, normalise_kind, summarise

log = logging.getLogger(__name__)

PRODUCER = "https://pypi.org/project/retrain-pipelines/"
FACET_SCHEMA = "https://pypi.org/project/retrain-pipelines/#/$defs/"
RUN_ID_NAMESPACE = uuid.UUID("5d3c1a52-9a0e-4f57-9e43-2f1f5d0e7c11")
_EXPLICIT_ENV = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED")


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


def new_run_id() -> str:
    return str(generate_new_uuid())


def make_client(home: Path) -> OpenLineageClient:
    """The environment's client if OpenLineage is configured there, else a file transport."""
    explicit = any(os.environ.get(k) for k in _EXPLICIT_ENV) or any(
        k.startswith("OPENLINEAGE__") for k in os.environ) or any(
        Path(p).is_file() for p in ("openlineage.yml", Path.home() / ".openlineage/openlineage.yml"))
    if explicit:
        return OpenLineageClient()
    path = store.openlineage_events(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))


def dataset_id(uri: str) -> tuple[str, str]:
    """OpenLineage (namespace, name) of an artifact URI, after the spec's naming conventions."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a path (or a Windows drive)
        return "file", str(Path(parsed.path if parsed.scheme == "file" else uri).absolute())
    return f"{parsed.scheme}://{parsed.netloc}", parsed.path or "/"


def parse_parent(value: str) -> tuple[str, str, str]:
    """``namespace/job_name/run_id`` -> its three parts (the job name may hold slashes)."""
    namespace, _, rest = value.partition("/")
    name, _, run_id = rest.rpartition("/")
    uuid.UUID(run_id)
    return namespace, name, run_id


def row_count(props: dict[str, Any]) -> int | None:
    rows = props.get("rows", props.get("row_count"))
    if isinstance(rows, dict):
        rows = rows.get("total", sum(v for v in rows.values() if isinstance(v, int)) or None)
    return rows if isinstance(rows, int) else None


class Emitter:
    """Emits the OpenLineage events of one execution."""

    def __init__(self, cfg: PipelineConfig, home: Path, ctx: RunContext, execution: dict[str, Any]):
        self.cfg, self.home, self.ctx, self.execution = cfg, Path(home), ctx, execution
        self.namespace = os.environ.get("OPENLINEAGE_NAMESPACE", "pipelines")
        self.run_id = execution["openlineage_run_id"]
        self.client: OpenLineageClient | None = None

    def start(self) -> None:
        self._emit(RunState.START, {})

    def complete(self, result: dict[str, Any]) -> None:
        self._emit(RunState.COMPLETE, result)

    def fail(self, result: dict[str, Any], message: str) -> None:
        self._emit(RunState.FAIL, result, error=message)

    def _emit(self, state: RunState, result: dict[str, Any], error: str | None = None) -> None:
        try:
            if self.client is None:
                self.client = make_client(self.home)
            self.client.emit(self.event(state, result, error))
        except Exception:  # noqa: BLE001 - lineage export must never fail a step
            log.warning("could not emit the OpenLineage %s event of %s.%s", state.value,
                        self.cfg.name, self.execution["step"], exc_info=True)

    def event(self, state: RunState, result: dict[str, Any], error: str | None = None) -> RunEvent:
        ex = self.execution
        facets: dict[str, RunFacet] = {
            "pipelines_execution": PipelineRunFacet(
                pipeline=ex["pipeline"], step=ex["step"], execution_id=ex["id"],
                run_id=ex["run_id"], triggered_by=ex["triggered_by"], dag_id=ex["dag_id"],
                dag_run_id=ex["dag_run_id"], try_number=ex["try_number"],
                code_version=ex["code_version"] or {}, config_sha256=ex["config_sha256"],
                parameters=ex["parameters"], summary=summarise(result) if result else {}),
        }
        parent = self.parent_facet()
        if parent is not None:
            facets["parent"] = parent
        if error is not None:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python")
        return RunEvent(
            eventType=state,
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=self.run_id, facets=facets),
            job=Job(namespace=self.namespace, name=f"{ex['pipeline']}.{ex['step']}", facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="RETRAIN_PIPELINES", jobType="TASK")}),
            inputs=[self.input_dataset(a) for a in result.get("inputs") or []],
            outputs=[self.output_dataset(a) for a in result.get("outputs") or []],
            producer=PRODUCER,
        )

    def parent_facet(self) -> parent_run.ParentRunFacet | None:
        """The Airflow task run when we know its ids, else the pipeline run of ``ctx.run_id``."""
        parent_id = getattr(self.ctx, "openlineage_parent_id", None)
        root_id = getattr(self.ctx, "openlineage_root_parent_id", None)
        try:
            if parent_id:
                ns, name, run = parse_parent(parent_id)
            else:
                ns, name = self.namespace, self.cfg.name
                run = str(uuid.uuid5(RUN_ID_NAMESPACE, self.ctx.run_id))
            root = None
            if root_id:
                rns, rname, rrun = parse_parent(root_id)
                root = parent_run.Root(run=parent_run.RootRun(runId=rrun),
                                       job=parent_run.RootJob(namespace=rns, name=rname))
        except ValueError:
            log.warning("ignoring malformed OpenLineage parent ids %r / %r: expected "
                        "namespace/job_name/run_uuid", parent_id, root_id)
            return None
        return parent_run.ParentRunFacet(run=parent_run.Run(runId=run),
                                         job=parent_run.Job(namespace=ns, name=name), root=root)

    def dataset_facets(self, record: dict[str, Any]) -> dict[str, DatasetFacet]:
        props = record.get("properties") or {}
        facets: dict[str, DatasetFacet] = {"pipelines_artifact": ArtifactDatasetFacet(
            kind=normalise_kind(record.get("kind")), sha256=record.get("sha256"),
            size=record.get("size"), properties=json_safe(props))}
        if record.get("sha256"):
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=record["sha256"])
        fields = self.schema_fields(record)
        if fields:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=fields)
        return facets

    def schema_fields(self, record: dict[str, Any]) -> list[schema_dataset.SchemaDatasetFacetFields]:
        """Declared schema (``properties.schema``), else the config's columns for raw data."""
        declared = (record.get("properties") or {}).get("schema")
        if isinstance(declared, dict):
            declared = [{"name": k, "type": v} for k, v in declared.items()]
        if isinstance(declared, list):
            return [schema_dataset.SchemaDatasetFacetFields(name=str(f.get("name")),
                                                            type=str(f.get("type")))
                    for f in declared if isinstance(f, dict) and f.get("name")]
        if normalise_kind(record.get("kind")) in ("SourceFile", "Snapshot"):
            return [schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type.upper(),
                                                            description=c.description or None)
                    for c in self.cfg.columns]
        return []

    def input_dataset(self, record: dict[str, Any]) -> InputDataset:
        ns, name = dataset_id(record["uri"])
        stats: dict[str, Any] = {}
        rows = row_count(record.get("properties") or {})
        if rows is not None or record.get("size") is not None:
            stats["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                rowCount=rows, size=record.get("size"))
        return InputDataset(namespace=ns, name=name, facets=self.dataset_facets(record),
                            inputFacets=stats)

    def output_dataset(self, record: dict[str, Any]) -> OutputDataset:
        ns, name = dataset_id(record["uri"])
        stats: dict[str, Any] = {}
        rows = row_count(record.get("properties") or {})
        if rows is not None or record.get("size") is not None:
            stats["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=rows, size=record.get("size")))
        return OutputDataset(namespace=ns, name=name, facets=self.dataset_facets(record),
                             outputFacets=stats)
