"""TF Serving follows the registry: models.config parsed with TF Serving's own config proto.

The registry writes the file under its lock with every alias change; these tests push small opaque
folders (the registry never looks inside a model) and read the file back as a ModelServerConfig.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from pipelines import registry, serving_config
from pipelines.context import RunContext

CTX = RunContext(run_id="serving-config-test")


@pytest.fixture()
def model_dir(tmp_path) -> Path:
    d = tmp_path / "model"
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(os.urandom(512))
    (d / "variables" / "variables.index").write_bytes(os.urandom(256))
    return d


def parsed(path: Path) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(Path(path).read_text(), model_server_config_pb2.ModelServerConfig())


def served(path: Path) -> tuple[str, str, list[int], dict[str, int]]:
    config = parsed(path)
    assert len(config.model_config_list.config) == 1
    m = config.model_config_list.config[0]
    assert m.model_platform == "tensorflow"
    return (m.name, m.base_path, list(m.model_version_policy.specific.versions),
            dict(m.version_labels))


def test_follows_promote_and_rollback(adult_cfg, tmp_path, model_dir):
    home = tmp_path / "home"
    path = serving_config.path(adult_cfg, home)
    registry.push(adult_cfg, home, CTX, model_dir, None, {})
    name, base, versions, labels = served(path)
    assert (name, base) == ("adult", str(registry.root(adult_cfg, home).resolve()))
    assert (versions, labels) == ([1], {"stable": 1})
    assert Path(base, "1", "saved_model.pb").is_file()  # TF Serving finds version 1 there

    registry.push(adult_cfg, home, CTX, model_dir, 1, {})
    assert served(path)[2:] == ([2], {"stable": 2})

    registry.rollback(adult_cfg, home, CTX, reason="bad canary")
    assert served(path)[2:] == ([1], {"stable": 1})  # the highest version (2) is NOT served
    assert registry.production(adult_cfg, home)["version"] == 1


def test_shadow_is_the_canary_label(adult_cfg, tmp_path):
    """Alias documents with a shadow (set by the shadow policy): both versions load, two labels."""
    base = tmp_path / "registry" / "adult"
    base.mkdir(parents=True)
    doc = {"pipeline": "adult", "production": 3, "previous": 2, "shadow": 5, "seq": 7}
    serving_config.write_for(base, doc)
    assert served(base / serving_config.CONFIG_FILE)[2:] == ([3, 5], {"stable": 3, "canary": 5})

    serving_config.write_for(base, {**doc, "shadow": None})  # shadow cleared (dropped/promoted)
    assert served(base / serving_config.CONFIG_FILE)[2:] == ([3], {"stable": 3})

    serving_config.write_for(base, {**doc, "shadow": 3})  # shadow equal to production: one label
    assert served(base / serving_config.CONFIG_FILE)[2:] == ([3], {"stable": 3})


def test_nothing_in_production_serves_nothing(adult_cfg, tmp_path):
    base = tmp_path / "registry" / "adult"
    base.mkdir(parents=True)
    serving_config.write_for(base, {"pipeline": "adult", "production": None, "versions": [4]})
    config = parsed(base / serving_config.CONFIG_FILE)
    assert config.HasField("model_config_list") and not config.model_config_list.config


def test_regenerated_by_hand_and_written_atomically(adult_cfg, tmp_path, model_dir):
    home = tmp_path / "home"
    registry.push(adult_cfg, home, CTX, model_dir, None, {})
    path = serving_config.path(adult_cfg, home)
    path.unlink()
    assert registry.write_serving_config(adult_cfg, home) == path
    assert served(path)[2:] == ([1], {"stable": 1})
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_repair_rewrites_it(adult_cfg, tmp_path, model_dir):
    home = tmp_path / "home"
    registry.push(adult_cfg, home, CTX, model_dir, None, {})
    registry.push(adult_cfg, home, CTX, model_dir, 1, {})
    base = registry.root(adult_cfg, home)
    (base / registry.ALIASES_FILE).unlink()
    (base / serving_config.CONFIG_FILE).unlink()
    registry.repair(adult_cfg, home)
    assert served(base / serving_config.CONFIG_FILE)[2:] == ([2], {"stable": 2})
