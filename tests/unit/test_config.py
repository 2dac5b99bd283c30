"""The config model: the adult config loads, and every error names the file and the field."""

from __future__ import annotations

import pytest

from pipelines.config import REPO_ROOT, ConfigError, load_config


def test_adult_config_loads_with_the_documented_defaults(adult_cfg):
    assert adult_cfg.name == "adult"
    assert adult_cfg.label.column == "income" and adult_cfg.label.positive_class == ">50K"
    assert len(adult_cfg.columns) == 15
    assert adult_cfg.evaluation.thresholds.overall_auc_min == 0.90
    assert adult_cfg.schedule.cron == "@daily"


def test_config_hash_ignores_formatting(tmp_path, adult_cfg):
    text = (REPO_ROOT / "configs" / "adult.yaml").read_text()
    copy = tmp_path / "adult.yaml"
    copy.write_text("# a comment that changes nothing\n" + text.replace(": ", ":  "))
    assert load_config(copy).sha256 == adult_cfg.sha256


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda t: t.replace("positive_class: \">50K\"", "positive_class: 3\n  bogus: 1"), "label.bogus"),
        (lambda t: t.replace("eval_fraction: 0.2", "eval_fraction: 1.5"), "split.eval_fraction"),
        (lambda t: t.replace("{landing}/adult/{span}/*.csv", "{landing}/adult/*.csv"), "source.uri_pattern"),
        (lambda t: t.replace("column: income", "column: salary"), "label.column"),
        (lambda t: t.replace("learning_rate: 0.001", "learning_rate: -1"), "model.learning_rate"),
    ],
)
def test_config_error_names_file_and_field(tmp_path, mutate, field):
    bad = tmp_path / "bad.yaml"
    bad.write_text(mutate((REPO_ROOT / "configs" / "adult.yaml").read_text()))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(bad) in str(err.value)
    assert field in str(err.value)


def test_missing_and_non_yaml_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    junk = tmp_path / "junk.yaml"
    junk.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(junk)
