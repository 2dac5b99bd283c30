"""Configs of the three task types for the evaluation tests, derived from configs/adult.yaml:
multiclass on `race`, regression on `hours_per_week` (the same real columns, other labels)."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipelines.config import REPO_ROOT, parse_config

RACES = ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"]


def adult_raw() -> dict:
    return yaml.safe_load((REPO_ROOT / "configs" / "adult.yaml").read_text())


def task_config(task: str, **evaluation):
    """Adult's config with the label (and gates) of ``task``; ``evaluation`` updates that section."""
    raw = copy.deepcopy(adult_raw())
    ev = raw["evaluation"]
    if task == "multiclass":
        raw["label"] = {"column": "race", "task": "multiclass", "classes": RACES}
        ev.update(slices=[[], ["sex"], ["age_bucket"], ["sex", "age_bucket"]],
                  thresholds={"overall_accuracy_min": 0.8, "slice_accuracy_min": 0.7,
                              "overall_macro_auc_min": 0.6, "accuracy_max_drop": 0.01},
                  fairness={"feature": "sex", "metric": "accuracy", "max_gap": 0.1},
                  override_bounds={"slice_accuracy_min": [0.5, 0.9],
                                   "fairness_max_gap": [0.05, 0.3]})
    elif task == "regression":
        raw["label"] = {"column": "hours_per_week", "task": "regression"}
        ev.update(slices=[[], ["sex"], ["age_bucket"]], decision_threshold=0.5,
                  thresholds={"overall_rmse_max": 12.0, "slice_rmse_max": 14.0,
                              "overall_r2_min": 0.1, "rmse_max_increase": 0.5},
                  fairness={"feature": "sex", "metric": "mae", "max_gap": 2.0},
                  override_bounds={"overall_rmse_max": [8.0, 20.0]})
    ev.update(evaluation)
    raw["sample_data"] = None
    if task != "binary":
        raw.pop("monitoring", None)  # its live gates are Adult's binary ones
    return parse_config(raw, f"<adult as {task}>")


@pytest.fixture(scope="session")
def multiclass_cfg():
    return task_config("multiclass")


@pytest.fixture(scope="session")
def regression_cfg():
    return task_config("regression")
