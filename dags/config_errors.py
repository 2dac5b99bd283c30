"""Surfaces every broken pipeline config as an Airflow import error, one line per problem.

dags/retrain.py builds one DAG per config and skips a config that does not load, so one broken file
never hides the other pipelines' DAGs. This file makes the broken ones visible: parsing it raises
when any ``configs/*.yaml`` is invalid, and Airflow lists that error (file and field, as
``pipelines.config`` words it) under Import Errors. It defines no DAG. Parse-light: pydantic and
yaml only.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.config import REPO_ROOT, ConfigError, load_config

CONFIG_DIR = Path(os.environ.get("PIPELINES_CONFIG_DIR") or REPO_ROOT / "configs")


def config_errors(config_dir: Path = CONFIG_DIR) -> list[str]:
    """The error of every config in ``config_dir`` that does not load."""
    errors = []
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            load_config(path)
        except ConfigError as exc:
            errors.append(str(exc))
    return errors


_errors = config_errors()
if _errors:
    raise ConfigError(f"{len(_errors)} pipeline config(s) invalid; their DAGs are not loaded, the "
                      "others are:\n" + "\n".join(_errors))
