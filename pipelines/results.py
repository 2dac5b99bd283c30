"""Typed step results: the one statement of what each step returns and each DAG task passes on.

Shared by the steps (their return types), :mod:`pipelines.flow` (the small dicts that travel between
DAG tasks through XCom), the DAG, the CLI and the tests. They are ``TypedDict``s, so a result stays
the plain JSON-serialisable dict that XCom and ``--json`` carry, and mypy (``make lint``) checks
every producer and reader against one definition. docs/CONTRACTS.md points here.

Every step result holds ``inputs`` and ``outputs``: lists of :class:`Artifact`, which the runner
records in the lineage store.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any, NotRequired, TypedDict


class ArtifactKind(StrEnum):
    """Kinds of lineage artifacts, CamelCase as in ML Metadata (one spelling per kind)."""

    SOURCE_FILE = "SourceFile"
    SNAPSHOT = "Snapshot"
    EXPECTATION_SUITE = "ExpectationSuite"
    VALIDATION_RESULT = "ValidationResult"
    TRANSFORM_GRAPH = "TransformGraph"
    TRANSFORMED_EXAMPLES = "TransformedExamples"
    MODEL = "Model"
    CURVES = "Curves"
    CURVES_PLOT = "CurvesPlot"
    MODEL_EVALUATION = "ModelEvaluation"
    MODEL_VERSION = "ModelVersion"
    REGISTRY_ALIASES = "RegistryAliases"
    AUDIT_REPORT = "AuditReport"
    PREDICTIONS = "Predictions"  # issue 12: batch scores of a monitored span
    MONITORING_RESULT = "MonitoringResult"
    APPROVAL_DECISION = "ApprovalDecision"  # issue 12: a person's approve/reject (approval.py)


class Artifact(TypedDict):
    """An input or output of a step, as lineage records it (``common.artifact`` builds one)."""

    kind: str
    uri: str
    sha256: str | None
    size: int | None
    properties: dict[str, Any]


class _Lineage(TypedDict):
    inputs: list[Artifact]
    outputs: list[Artifact]


class ModelRef(TypedDict):
    """A registered version: the production baseline of an evaluation, an alias target."""

    version: int
    uri: str


class IngestResult(_Lineage):
    snapshot_id: str
    uri: str
    reused: bool
    golden: bool
    spans: list[str]
    rows: dict[str, int]  # total and per split
    label_balance: dict[str, dict[str, Any]]  # split -> counts, rates (binary: positive_rate)
    malformed_rows: int
    provenance_uri: str
    sha256: str


class ValidateResult(_Lineage):
    status: str  # "accepted" ("rejected" travels in DataRejected.result)
    snapshot_uri: str
    snapshot_id: str
    golden: bool
    rows: int
    expectations: dict[str, Any]  # suite, suite_uri, run, failed
    results: list[dict[str, Any]]
    malformed: dict[str, Any]
    drift: dict[str, dict[str, Any]]
    drift_note: str
    baseline_uri: str | None
    failures: list[str]
    contract_sha256: str
    validated_at: str
    run_id: str
    seconds: float
    report_json: str
    report_html: str
    reused: bool


class TransformResult(_Lineage):
    transform_id: str
    transform_uri: str
    transform_graph_uri: str
    transformed: dict[str, str]  # split -> file pattern
    sha256: str
    rows: dict[str, int]
    seconds: float
    reused: NotRequired[bool]


class TrainResult(_Lineage):
    model_id: str
    model_uri: str
    sha256: str
    metrics: dict[str, float]
    curves_json: str
    curves_png: str
    output_key: str
    warm_start: dict[str, int] | None
    features: dict[str, Any]
    seconds: float
    reused: NotRequired[bool]


class Check(TypedDict):
    """One gate judged on one dataset and slice; ``passed`` None: reported, not gated (``note``)."""

    kind: str  # value | change | fairness
    threshold: str
    dataset: str
    slice: str
    metric: str
    value: float | None
    bound: float
    op: str
    passed: bool | None
    note: str


class EvaluateResult(_Lineage):
    evaluation_uri: str
    evaluation_id: str
    blessed: bool
    reasons: list[str]
    checks: list[Check]
    baseline: ModelRef | None
    metrics: dict[str, Any]  # dataset -> {candidate: {...}, baseline: {...}}
    thresholds: dict[str, Any] | None
    tfma_seconds: float


class PromoteResult(_Lineage):
    promoted: bool
    version: int | None
    registry_uri: str | None
    previous_version: int | None
    reasons: list[str]
    infra_check: dict[str, Any] | None
    blessed: bool
    evaluation_uri: str
    shadow: NotRequired[bool]  # issue 12: promotion.policy shadow set the `shadow` alias
    alias: NotRequired[str]


class ReportResult(_Lineage):
    report_html: str
    decision: str


class RollbackResult(_Lineage):
    production: ModelRef | None
    previous: ModelRef | None
    rolled_back_from: int | None
    reason: str


# What the DAG tasks hand each other through XCom (pipelines/flow.py): small, URIs and hashes.
class RunParams(TypedDict):
    span: str
    window: int
    force: bool
    threshold_overrides: dict[str, float]


class Ingested(TypedDict):
    snapshot_id: str
    uri: str
    sha256: str
    reused: bool
    spans: list[str]
    rows: dict[str, int]
    malformed_rows: int
    provenance_uri: str
    params: RunParams
    golden_uri: str | None
    golden_sha256: str | None


class Validated(TypedDict):
    status: str
    snapshot_uri: str
    expectations: dict[str, Any]
    failures: list[str]
    baseline_uri: str | None
    report_html: str


class Transformed(TypedDict):
    transform_uri: str
    transform_graph_uri: str
    transformed: dict[str, str]
    sha256: str


class Trained(TypedDict):
    model_uri: str
    model_id: str
    sha256: str
    metrics: dict[str, float]


class Evaluated(TypedDict):
    evaluation_uri: str
    blessed: bool
    reasons: list[str]
    baseline: ModelRef | None
    metrics: dict[str, Any]
    model_uri: str


class Promoted(TypedDict):
    promoted: bool
    version: int | None
    registry_uri: str | None
    previous_version: int | None
    reasons: list[str]
    shadow: NotRequired[bool]  # issue 12: the version is the shadow candidate, not production
    approval: NotRequired[dict[str, Any]]  # issue 12, policy approval: the decision (approval.py)


class Reported(TypedDict):
    report_html: str


def artifact(kind: ArtifactKind, uri: str | os.PathLike, sha256: str | None = None, size: int | None = None,
             **properties: Any) -> Artifact:
    """The artifact record every step returns in its ``inputs`` and ``outputs`` lists."""
    return Artifact(kind=str(kind), uri=str(uri), sha256=sha256, size=size, properties=properties)
