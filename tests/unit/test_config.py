"""The config model: the adult config loads, and every error names the file and the field."""

from __future__ import annotations

import pytest

from pipelines.config import REPO_ROOT, ConfigError, load_config


def test_adult_config_loads_with_the_documented_defaults(adult_cfg):
    assert adult_cfg.name == "adult"
    assert adult_cfg.label.column == "income" and adult_cfg.label.positive_class == ">50K"
    assert len(adult_cfg.columns) == 15
    assert adult_cfg.task == "binary" and adult_cfg.label.negative_class == "<=50K"
    assert adult_cfg.evaluation.thresholds["overall_auc_min"] == 0.90
    assert [g.name for g in adult_cfg.gates] == ["overall_auc_min", "slice_auc_min", "auc_max_drop"]
    assert adult_cfg.evaluation.fairness.feature == "sex"
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
        # issue 10's bad inputs: each refused at load, naming the field and what is accepted
        (lambda t: t.replace("row_key: []", "row_key: [idx]"), "row_key: 'idx' is not one"),
        (lambda t: t.replace("task: binary", "task: regression")
         .replace('  classes: ["<=50K", ">50K"]\n', "").replace('  positive_class: ">50K"\n', ""),
         "label.column: task regression needs a numeric column, but 'income' is string"),
        (lambda t: t.replace('positive_class: ">50K"', 'positive_class: ">60K"'),
         "label.positive_class: '>60K' is not one of classes"),
        (lambda t: t.replace('classes: ["<=50K", ">50K"]', "classes: [0, 1]\n  positive_class: 1")
         .replace('  positive_class: ">50K"\n', ""), "label.classes: [0, 1] are not string"),
        (lambda t: t.replace("slices: [[], [sex], [race]", "slices: [[], [gender], [race]"),
         "evaluation.slices[1]: 'gender' is neither a column"),
        (lambda t: t.replace("    overall_auc_min: 0.90", "    overall_rmse_max: 3.0"),
         "evaluation.thresholds.overall_rmse_max: not a threshold of task binary (a regression"),
        (lambda t: t.replace("    slice_auc_min: [0.80, 0.99]", "    slice_auc_mni: [0.80, 0.99]"),
         "evaluation.override_bounds.slice_auc_mni: not a threshold of task binary"),
        (lambda t: t.replace("age_bucket: {column: age,", "age_bucket: {column: years,"),
         "evaluation.slice_features.age_bucket.column: 'years' is not one of the columns"),
        (lambda t: t.replace("metric: fnr,", "metric: rmse,"),
         "evaluation.fairness.metric: 'rmse' is not a fairness metric of task binary"),
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


def test_every_problem_of_a_config_is_reported_at_once(tmp_path):
    text = (REPO_ROOT / "configs" / "adult.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("[sex, race]]", "[sex, ethnicity]]")
                   .replace("    auc_max_drop: 0.005", "    accuracy_max_drop: 0.005"))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{bad}: invalid pipeline config"
    assert any("'ethnicity'" in line for line in lines)
    assert any("accuracy_max_drop" in line and "(a multiclass threshold)" in line for line in lines)


def test_a_config_with_no_evaluation_section_inherits_no_use_case(tmp_path):
    import yaml

    raw = yaml.safe_load((REPO_ROOT / "configs" / "adult.yaml").read_text())
    del raw["evaluation"]
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(raw))
    cfg = load_config(bare)
    assert cfg.evaluation.slices == [[]]  # overall only
    assert cfg.evaluation.fairness is None and cfg.evaluation.thresholds == {}
    assert cfg.evaluation.slice_features == {}


def test_the_transform_analyzer_cache_is_a_config_switch_off_by_default(tmp_path, adult_cfg):
    assert adult_cfg.transform_analyzer_cache is False
    text = (REPO_ROOT / "configs" / "adult.yaml").read_text()
    on = tmp_path / "on.yaml"
    on.write_text(text.replace("transform_module: transforms.adult",
                               "transform_module: transforms.adult\ntransform_analyzer_cache: true"))
    assert load_config(on).transform_analyzer_cache is True
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("transform_module: transforms.adult",
                                "transform_module: transforms.adult\ntransform_analyzer_cache: often"))
    with pytest.raises(ConfigError, match="transform_analyzer_cache"):
        load_config(bad)
