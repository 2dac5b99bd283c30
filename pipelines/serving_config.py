"""The TF Serving model config that follows the registry's aliases (``models.config``).

Called by :mod:`pipelines.registry` under its lock each time aliases.json is written (promote,
rollback, repair, shadow set or clear), and by :func:`write` to regenerate it by hand. No
TensorFlow and no protobuf here: the file is a short text proto, and the tests parse it with TF
Serving's own ``ModelServerConfig`` message (``tensorflow-serving-api``).

A TF Serving server pointed at the registry folder alone serves the highest version number,
whatever the aliases say (a rollback changes nothing there). Pointed at this file instead, it loads
exactly the versions the aliases name and labels them::

    stable -> production      canary -> shadow (when a shadow candidate is set)

Serve it with (README, "Serving")::

    tensorflow_model_server --port=8500 --rest_api_port=8501 \\
        --model_config_file=<home>/registry/<name>/models.config \\
        --model_config_file_poll_wait_seconds=30 --allow_version_labels_for_unavailable_models

The polling flag makes the server pick up every alias change without a restart. With no version in
production the file lists no model, so a server serves nothing rather than an unvetted version.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from pipelines import store

CONFIG_FILE = "models.config"
LABELS = {"stable": "production", "canary": "shadow"}  # TF Serving label -> registry alias


def labels(aliases: dict[str, Any]) -> dict[str, int]:
    """TF Serving version labels of an alias document: ``{"stable": 3, "canary": 4}``."""
    out = {}
    for label, alias in LABELS.items():
        version = aliases.get(alias)
        if isinstance(version, int) and not isinstance(version, bool):
            out[label] = version
    if "canary" in out and out["canary"] == out.get("stable"):
        del out["canary"]  # a label names one version; the shadow is production already
    return out


def render(name: str, base_path: str | Path, aliases: dict[str, Any]) -> str:
    """The text proto of a ``ModelServerConfig`` serving ``name`` from ``base_path``."""
    by_label = labels(aliases)
    head = (f"# TF Serving model config of pipeline {name}, written by pipelines.registry with\n"
            f"# every alias change (registry state seq {aliases.get('seq', '?')}). Do not edit.\n")
    if "stable" not in by_label:
        return head + "# No version is in production: nothing is served.\nmodel_config_list {\n}\n"
    versions = sorted(set(by_label.values()))
    policy = "".join(f"        versions: {v}\n" for v in versions)
    label_lines = "".join(f"    version_labels {{\n      key: {json.dumps(label)}\n"
                          f"      value: {version}\n    }}\n"
                          for label, version in sorted(by_label.items()))
    return (head + "model_config_list {\n  config {\n"
            f"    name: {json.dumps(name)}\n"
            f"    base_path: {json.dumps(str(base_path))}\n"
            '    model_platform: "tensorflow"\n'
            "    model_version_policy {\n      specific {\n" + policy + "      }\n    }\n"
            + label_lines + "  }\n}\n")


def write_for(base: Path, aliases: dict[str, Any]) -> Path:
    """Writes ``<registry base>/models.config`` for this alias document, atomically (fsynced).

    Called with the registry lock held, right after aliases.json is written.
    """
    base = Path(base)
    name = aliases.get("pipeline") or base.name
    target = base / CONFIG_FILE
    tmp = base / f".{CONFIG_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(render(name, base.resolve(), aliases))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def path(cfg: Any, home: Path) -> Path:
    """Where the model config of a pipeline lives (beside its aliases.json)."""
    return store.root(home, store.Kind.REGISTRY, cfg.name) / CONFIG_FILE
