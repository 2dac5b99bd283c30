"""The pipeline config: one YAML file per use case under configs/, validated by pydantic.

Called by the CLI, the DAG factory and every step. A config error names the file and the field.
Nothing here touches the file system except :func:`load_config`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A config file is missing, unreadable or invalid; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    name: str
    type: Literal["int", "float", "string"]
    description: str = ""


class Source(_Strict):
    """Where span files land. ``{landing}`` and ``{span}`` are substituted at run time."""

    uri_pattern: str = Field(description="glob of one span's files, e.g. {landing}/adult/{span}/*.csv")
    golden_pattern: str | None = Field(default=None, description="glob of the fixed golden eval set")
    format: Literal["csv", "parquet"] = "csv"
    header: bool = True
    delimiter: str = ","
    missing_marker: str = "?"
    span_format: str = "%Y-%m-%d"

    @field_validator("uri_pattern")
    @classmethod
    def _has_span(cls, v: str) -> str:
        if "{span}" not in v:
            raise ValueError("must contain the placeholder {span}")
        return v


class Label(_Strict):
    column: str
    positive_class: str
    negative_class: str


class Split(_Strict):
    eval_fraction: float = Field(0.2, gt=0, lt=1)
    salt: str = Field("v1", description="changing it reshuffles every split")


class Beam(_Strict):
    runner: str = "DirectRunner"
    options: list[str] = Field(default_factory=list, description="extra Beam pipeline flags")


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


class Model(_Strict):
    hidden_units: list[int] = Field(default_factory=lambda: [64, 32])
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(256, ge=1)
    epochs: int = Field(20, ge=1)
    early_stopping_patience: int = Field(3, ge=0)
    seed: int = 42
    warm_start: bool = False


class Thresholds(_Strict):
    overall_auc_min: float | None = Field(0.90, ge=0, le=1)
    slice_auc_min: float | None = Field(0.85, ge=0, le=1)
    auc_max_drop: float | None = Field(0.005, ge=0, le=1)
    fairness_feature: str | None = "sex"
    fnr_gap_max: float | None = Field(0.20, ge=0, le=1)


class Evaluation(_Strict):
    decision_threshold: float = Field(0.5, gt=0, lt=1)
    min_slice_size: int = Field(200, ge=0)
    slices: list[list[str]] = Field(
        default_factory=lambda: [[], ["sex"], ["race"], ["age_bucket"], ["sex", "race"]]
    )
    age_boundaries: list[int] = Field(default_factory=lambda: [25, 35, 45, 55, 65])
    thresholds: Thresholds | None = Thresholds()
    override_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="threshold name -> (low, high) a manual trigger may set it to",
    )


class Schedule(_Strict):
    cron: str | None = "@daily"
    start_date: str = "2026-01-01"
    catchup: bool = False


class PipelineConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    description: str = ""
    owner: str = "ml-platform"
    tags: list[str] = Field(default_factory=list)
    source: Source
    columns: list[Column]
    label: Label
    row_key: list[str] = Field(default_factory=list, description="empty: the whole row is the key")
    split: Split = Split()
    window: int = Field(7, ge=1, le=366, description="spans the model trains on")
    beam: Beam = Beam()
    validation: Validation
    transform_module: str = Field(description="module holding preprocessing_fn, e.g. transforms.adult")
    model: Model = Model()
    evaluation: Evaluation = Evaluation()
    schedule: Schedule = Schedule()

    @model_validator(mode="after")
    def _check_columns(self) -> PipelineConfig:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"columns: duplicate names in {names}")
        if self.label.column not in names:
            raise ValueError(f"label.column: {self.label.column!r} is not one of the columns")
        for key in self.row_key:
            if key not in names:
                raise ValueError(f"row_key: {key!r} is not one of the columns")
        return self

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def feature_columns(self) -> list[Column]:
        return [c for c in self.columns if c.name != self.label.column]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def sha256(self) -> str:
        """Stable hash of the validated config (key order and formatting do not matter)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid pipeline config"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {field}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path) -> PipelineConfig:
    """Reads and validates a pipeline config file.

    Raises:
        ConfigError: the file is missing, is not YAML, or a field is invalid (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from exc
