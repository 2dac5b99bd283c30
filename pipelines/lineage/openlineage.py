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

Cost: in the default case (no OpenLineage configuration, the client not yet imported, no git origin
for the client's source-code facet) the events are built as plain JSON and appended here, without
importing ``openlineage.client`` (about half a second of CPU, more than a reused step takes); the
lines are the ones the client's file transport writes (:data:`FACET_SCHEMAS`, checked against the
client's classes by tests/lineage/test_openlineage_fast.py). Otherwise the client emits them
(:mod:`pipelines.lineage.openlineage_client`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pipelines import store
from pipelines.config import PipelineConfig
from pipelines.context import RunContext
from pipelines.lineage.common import json_safe, normalise_kind, summarise
from pipelines.lineage.openlineage_ids import (  # noqa: F401 - re-exported
    FACET_SCHEMA,
    PRODUCER,
    RUN_ID_NAMESPACE,
    dataset_id,
    explicit_config,
    parent_ids,
    parse_parent,
    row_count,
    schema_fields,
)

log = logging.getLogger(__name__)

# Read by our code only (the job namespace); any other OPENLINEAGE* variable may steer the client.
_OUR_ENV = ("OPENLINEAGE_NAMESPACE",)

# The schemaURL of each object the events hold, as openlineage-python 1.54 sets them
# (tests/lineage/test_openlineage_fast.py compares them with the client's classes).
_SPEC = "https://openlineage.io/spec/"
EVENT_SCHEMA = _SPEC + "2-0-2/OpenLineage.json#/$defs/RunEvent"
FACET_SCHEMAS = {
    "pipelines_execution": FACET_SCHEMA + "PipelineRunFacet",
    "pipelines_artifact": FACET_SCHEMA + "ArtifactDatasetFacet",
    "parent": _SPEC + "facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "errorMessage": _SPEC + "facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "tags": _SPEC + "facets/1-0-0/TagsRunFacet.json#/$defs/TagsRunFacet",
    "jobType": _SPEC + "facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "version": _SPEC + "facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "schema": _SPEC + "facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "inputStatistics": _SPEC + "facets/1-0-0/InputStatisticsInputDatasetFacet.json"
                       "#/$defs/InputStatisticsInputDatasetFacet",
    "outputStatistics": _SPEC + "facets/1-0-2/OutputStatisticsOutputDatasetFacet.json"
                        "#/$defs/OutputStatisticsOutputDatasetFacet",
}


def new_run_id() -> str:
    """A UUIDv7 (time-ordered) run id, as ``openlineage.client.uuid.generate_new_uuid`` makes it."""
    value = ((time.time_ns() // 10**6) & 0xFFFFFFFFFFFF) << 80
    value |= secrets.randbits(76) & 0xFFFFFFFFFFFFFFFFFFFF
    value = (value & ~(0xF000 << 64)) | (7 << 76)
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)
    return str(uuid.UUID(int=value))


def _git_origin() -> bool:
    """The working directory is in a git checkout with an ``origin`` remote: the client would add
    its sourceCodeLocation job facet (``openlineage.client.git``), so the client must emit."""
    import configparser

    start = Path.cwd().resolve()
    for directory in (start, *start.parents):
        git = directory / ".git"
        if git.is_file():
            text = git.read_text().strip()
            if not text.startswith("gitdir: "):
                continue
            raw = Path(text.removeprefix("gitdir: "))
            git = raw if raw.is_absolute() else (directory / raw).resolve()
        elif not git.is_dir():
            continue
        config = configparser.RawConfigParser(strict=False)
        try:
            config.read(git / "config")
        except configparser.Error:
            return True  # let the client decide
        return config.get('remote "origin"', "url", fallback=None) is not None
    return False


def local_events_file(home: Path) -> Path | None:
    """The events file to append to without the client, or ``None`` when the client must emit:
    OpenLineage is configured (or any ``OPENLINEAGE*`` variable but ours is set), the client is
    already imported (an Airflow worker: it may have set another producer), or it would add a
    source-code facet."""
    if "openlineage.client" in sys.modules or explicit_config():
        return None
    if any(k.startswith("OPENLINEAGE") and k not in _OUR_ENV for k in os.environ):
        return None
    if _git_origin():
        return None
    return store.openlineage_events(home)


def _client_version() -> str:
    from importlib import metadata

    return metadata.version("openlineage-python")


def clean(obj: Any) -> Any:
    """Drops ``None`` values and ``None`` or ``{}`` list items, as the client's ``Serde`` does."""
    if isinstance(obj, dict):
        return {k: c for k, c in ((k, clean(v)) for k, v in obj.items()) if c is not None}
    if isinstance(obj, list | tuple):
        out = [clean(v) for v in obj if v is not None]
        return [v for v in out if v is not None and (not isinstance(v, dict) or v != {})]
    return obj


def to_json(event: dict[str, Any]) -> str:
    """One event as the client's file transport writes it (``Serde.to_json``)."""
    return json.dumps(clean(event), sort_keys=True,
                      default=lambda o: f"<<non-serializable: {type(o).__qualname__}>>")


class Emitter:
    """Emits the OpenLineage events of one execution."""

    def __init__(self, cfg: PipelineConfig, home: Path, ctx: RunContext, execution: dict[str, Any]):
        self.cfg, self.home, self.ctx, self.execution = cfg, Path(home), ctx, execution
        self.namespace = os.environ.get("OPENLINEAGE_NAMESPACE", "pipelines")
        self.run_id = execution["openlineage_run_id"]
        self.client: Any = None  # openlineage.client.OpenLineageClient, on the client path

    def start(self) -> None:
        self._emit("START", {})

    def complete(self, result: dict[str, Any]) -> None:
        self._emit("COMPLETE", result)

    def fail(self, result: dict[str, Any], message: str) -> None:
        self._emit("FAIL", result, error=message)

    def _emit(self, state: str, result: dict[str, Any], error: str | None = None) -> None:
        try:
            path = None if self.client is not None else local_events_file(self.home)
            if path is not None:
                line = to_json(self.event_dict(state, result, error))
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a") as f:
                    f.write(line + "\n")
                return
            from pipelines.lineage import openlineage_client

            if self.client is None:
                self.client = openlineage_client.make_client(self.home)
            self.client.emit(openlineage_client.event(self, state, result, error))
        except Exception:  # noqa: BLE001 - lineage export must never fail a step
            log.warning("could not emit the OpenLineage %s event of %s.%s", state,
                        self.cfg.name, self.execution["step"], exc_info=True)

    def event_dict(self, state: str, result: dict[str, Any], error: str | None = None,
                   event_time: str | None = None) -> dict[str, Any]:
        """The run event in ``state`` as the JSON the client writes (before :func:`clean`)."""
        version = _client_version()
        producer = f"https://github.com/OpenLineage/OpenLineage/tree/{version}/client/python"
        ex = self.execution

        def facet(key: str, **fields: Any) -> dict[str, Any]:
            return {"_producer": producer, "_schemaURL": FACET_SCHEMAS[key], **fields}

        run_facets = {"pipelines_execution": facet(
            "pipelines_execution", pipeline=ex["pipeline"], step=ex["step"],
            execution_id=ex["id"], run_id=ex["run_id"], triggered_by=ex["triggered_by"],
            dag_id=ex["dag_id"], dag_run_id=ex["dag_run_id"], try_number=ex["try_number"],
            code_version=ex["code_version"] or {}, config_sha256=ex["config_sha256"],
            parameters=ex["parameters"], summary=summarise(result) if result else {})}
        ids = parent_ids(self)
        if ids is not None:
            (ns, name, run), root_ids = ids
            root = None
            if root_ids is not None:
                root = {"run": {"runId": root_ids[2], "facets": {}},
                        "job": {"namespace": root_ids[0], "name": root_ids[1], "facets": {}}}
            run_facets["parent"] = facet(
                "parent", run={"runId": run, "facets": {}},
                job={"namespace": ns, "name": name, "facets": {}}, root=root)
        if error is not None:
            run_facets["errorMessage"] = facet("errorMessage", message=error,
                                               programmingLanguage="python", stackTrace=None)
        # the client's own run tag (``OpenLineageClient._run_tags``), added to every run event
        run_facets["tags"] = facet("tags", tags=[{"key": "openlineage_client_version",
                                                  "value": version, "source": "OPENLINEAGE_CLIENT"}])
        return {
            "eventTime": event_time or dt.datetime.now(dt.UTC).isoformat(),
            "producer": PRODUCER,
            "schemaURL": EVENT_SCHEMA,
            "run": {"runId": self.run_id, "facets": run_facets},
            "job": {"namespace": self.namespace, "name": f"{ex['pipeline']}.{ex['step']}",
                    "facets": {"jobType": facet("jobType", _deleted=None, processingType="BATCH",
                                                integration="RETRAIN_PIPELINES", jobType="TASK",
                                                emissionPattern=None)}},
            "eventType": state,
            "inputs": [self._dataset(a, producer, facet, "input")
                       for a in result.get("inputs") or []],
            "outputs": [self._dataset(a, producer, facet, "output")
                        for a in result.get("outputs") or []],
        }

    def _dataset(self, record: dict[str, Any], producer: str, facet: Any,
                 role: str) -> dict[str, Any]:
        ns, name = dataset_id(record["uri"])
        props = record.get("properties") or {}
        facets = {"pipelines_artifact": facet(
            "pipelines_artifact", _deleted=None, kind=normalise_kind(record.get("kind")),
            sha256=record.get("sha256"), size=record.get("size"), properties=json_safe(props))}
        if record.get("sha256"):
            facets["version"] = facet("version", _deleted=None, datasetVersion=record["sha256"])
        fields = schema_fields(self.cfg, record)
        if fields:
            facets["schema"] = facet("schema", _deleted=None, fields=[
                {"name": f["name"], "type": f.get("type"), "description": f.get("description"),
                 "ordinal_position": None, "fields": []} for f in fields])
        stats: dict[str, Any] = {}
        rows = row_count(props)
        if rows is not None or record.get("size") is not None:
            key = f"{role}Statistics"
            stats[key] = facet(key, rowCount=rows, size=record.get("size"), fileCount=None)
        return {"namespace": ns, "name": name, "facets": facets, f"{role}Facets": stats}
