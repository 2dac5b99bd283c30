"""OpenLineage names and ids of our events, shared by :mod:`pipelines.lineage.openlineage` (plain
JSON) and :mod:`pipelines.lineage.openlineage_client` (the client's objects); imports no OpenLineage.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipelines.config import PipelineConfig
from pipelines.lineage.common import normalise_kind

log = logging.getLogger("pipelines.lineage.openlineage")

PRODUCER = "https://pypi.org/project/retrain-pipelines/"
FACET_SCHEMA = "https://pypi.org/project/retrain-pipelines/#/$defs/"
RUN_ID_NAMESPACE = uuid.UUID("5d3c1a52-9a0e-4f57-9e43-2f1f5d0e7c11")
_EXPLICIT_ENV = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED")


def explicit_config() -> bool:
    """OpenLineage is configured in the environment (URL, config file, ``OPENLINEAGE__*``)."""
    return any(os.environ.get(k) for k in _EXPLICIT_ENV) or any(
        k.startswith("OPENLINEAGE__") for k in os.environ) or any(
        Path(p).is_file() for p in ("openlineage.yml", Path.home() / ".openlineage/openlineage.yml"))


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


def schema_fields(cfg: PipelineConfig, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Declared schema (``properties.schema``), else the config's columns for raw data; each
    field as the keyword arguments of ``SchemaDatasetFacetFields``."""
    declared = (record.get("properties") or {}).get("schema")
    if isinstance(declared, dict):
        declared = [{"name": k, "type": v} for k, v in declared.items()]
    if isinstance(declared, list):
        return [{"name": str(f.get("name")), "type": str(f.get("type"))}
                for f in declared if isinstance(f, dict) and f.get("name")]
    if normalise_kind(record.get("kind")) in ("SourceFile", "Snapshot"):
        return [{"name": c.name, "type": c.type.upper(), "description": c.description or None}
                for c in cfg.columns]
    return []


def parent_ids(em: Any) -> tuple[tuple[str, str, str], tuple[str, str, str] | None] | None:
    """(namespace, job, run) of the parent run and of the root run (``None`` without Airflow's):
    the Airflow task run when we know its ids, else the pipeline run of ``ctx.run_id``;
    ``None`` (and a warning) when the ids are malformed."""
    parent_id = getattr(em.ctx, "openlineage_parent_id", None)
    root_id = getattr(em.ctx, "openlineage_root_parent_id", None)
    try:
        if parent_id:
            parent = parse_parent(parent_id)
        else:
            parent = (em.namespace, em.cfg.name, str(uuid.uuid5(RUN_ID_NAMESPACE, em.ctx.run_id)))
        root = parse_parent(root_id) if root_id else None
    except ValueError:
        log.warning("ignoring malformed OpenLineage parent ids %r / %r: expected "
                    "namespace/job_name/run_uuid", parent_id, root_id)
        return None
    return parent, root
