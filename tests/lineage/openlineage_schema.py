"""The OpenLineage RunEvent JSON schema the lineage tests validate every emitted event against.

The schema used is the first ``OpenLineage.json`` found inside the installed openlineage packages
(or the file named by ``OPENLINEAGE_SPEC_JSON``). openlineage-python 1.54 ships none: its event and
facet classes are generated from spec 2-0-2 and carry only the schema URLs. So the fallback below
restates that contract for the parts we emit, field for field as the generated classes in
``openlineage/client/generated/`` define it (base.py: RunEvent, Run, Job, datasets, BaseFacet;
parent_run.py 1-2-0; error_message_run.py 1-0-1; schema_dataset.py 1-2-0;
dataset_version_dataset.py; input/output statistics; job_type_job.py 2-0-4).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from urllib.parse import urlparse

from jsonschema import Draft202012Validator, FormatChecker

UUID = {"type": "string", "format": "uuid"}
URI = {"type": "string", "format": "uri"}
BASE_FACET = {"type": "object", "required": ["_producer", "_schemaURL"],
              "properties": {"_producer": URI, "_schemaURL": URI}}


def _facet(required: list[str], properties: dict) -> dict:
    return {"allOf": [{"$ref": "#/$defs/BaseFacet"},
                      {"type": "object", "required": required, "properties": properties}]}


_JOB_REF = {"type": "object", "required": ["namespace", "name"],
            "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}}}
_RUN_REF = {"type": "object", "required": ["runId"], "properties": {"runId": UUID}}
_INT = {"type": ["integer", "null"]}

FALLBACK = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$ref": "#/$defs/RunEvent",
    "$defs": {
        "BaseFacet": BASE_FACET,
        "RunEvent": {
            "type": "object",
            "required": ["eventTime", "producer", "schemaURL", "run", "job"],
            "properties": {
                "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
                "eventTime": {"type": "string", "format": "date-time"},
                "producer": URI, "schemaURL": URI,
                "run": {"$ref": "#/$defs/Run"}, "job": {"$ref": "#/$defs/Job"},
                "inputs": {"type": "array", "items": {"$ref": "#/$defs/InputDataset"}},
                "outputs": {"type": "array", "items": {"$ref": "#/$defs/OutputDataset"}},
            },
        },
        "Run": {"type": "object", "required": ["runId"], "properties": {
            "runId": UUID,
            "facets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/BaseFacet"},
                       "properties": {"parent": {"$ref": "#/$defs/ParentRunFacet"},
                                      "errorMessage": {"$ref": "#/$defs/ErrorMessageRunFacet"}}},
        }},
        "Job": {"type": "object", "required": ["namespace", "name"], "properties": {
            "namespace": {"type": "string"}, "name": {"type": "string"},
            "facets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/BaseFacet"},
                       "properties": {"jobType": {"$ref": "#/$defs/JobTypeJobFacet"}}},
        }},
        "Dataset": {"type": "object", "required": ["namespace", "name"], "properties": {
            "namespace": {"type": "string"}, "name": {"type": "string"},
            "facets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/BaseFacet"},
                       "properties": {"schema": {"$ref": "#/$defs/SchemaDatasetFacet"},
                                      "version": {"$ref": "#/$defs/DatasetVersionDatasetFacet"}}},
        }},
        "InputDataset": {"allOf": [{"$ref": "#/$defs/Dataset"}, {"properties": {"inputFacets": {
            "type": "object", "additionalProperties": {"$ref": "#/$defs/BaseFacet"},
            "properties": {"inputStatistics": _facet([], {"rowCount": _INT, "size": _INT})}}}}]},
        "OutputDataset": {"allOf": [{"$ref": "#/$defs/Dataset"}, {"properties": {"outputFacets": {
            "type": "object", "additionalProperties": {"$ref": "#/$defs/BaseFacet"},
            "properties": {"outputStatistics": _facet([], {"rowCount": _INT, "size": _INT})}}}}]},
        "ParentRunFacet": _facet(["run", "job"], {
            "run": _RUN_REF, "job": _JOB_REF,
            "root": {"type": "object", "required": ["run", "job"],
                     "properties": {"run": _RUN_REF, "job": _JOB_REF}}}),
        "ErrorMessageRunFacet": _facet(["message", "programmingLanguage"], {
            "message": {"type": "string"}, "programmingLanguage": {"type": "string"},
            "stackTrace": {"type": ["string", "null"]}}),
        "JobTypeJobFacet": _facet(["processingType", "integration"], {
            "processingType": {"type": "string"}, "integration": {"type": "string"},
            "jobType": {"type": ["string", "null"]}}),
        "SchemaDatasetFacet": _facet([], {"fields": {"type": "array", "items": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "type": {"type": ["string", "null"]},
                           "description": {"type": ["string", "null"]}}}}}),
        "DatasetVersionDatasetFacet": _facet(["datasetVersion"],
                                             {"datasetVersion": {"type": "string"}}),
    },
}


def shipped_schema() -> tuple[dict, str]:
    """(schema, where it came from): a shipped OpenLineage.json if any, else the fallback."""
    explicit = os.environ.get("OPENLINEAGE_SPEC_JSON")
    candidates = [Path(explicit)] if explicit else []
    import openlineage

    for root in openlineage.__path__:
        candidates += sorted(Path(root).rglob("OpenLineage.json"))
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text()), str(path)
    return FALLBACK, "restated from openlineage-python's generated classes (spec 2-0-2)"


FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or dt.datetime.fromisoformat(value).tzinfo is not None


@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    return not isinstance(value, str) or bool(urlparse(value).scheme)


def validator() -> Draft202012Validator:
    schema, _ = shipped_schema()
    return Draft202012Validator(schema, format_checker=FORMATS)
