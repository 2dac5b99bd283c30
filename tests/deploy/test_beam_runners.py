"""Beam runner and options per step from the config, checked at load and when a step builds them.

The examples for DataflowRunner, FlinkRunner and SparkRunner in docs/beam-runners.yaml (README
"Deploying") are built here for every step: Beam's PipelineOptions parse them, every flag is one
Beam knows and the runner's required flags are present. The runners themselves cannot start here
(Dataflow needs a GCP project; Flink and Spark need their clusters and a job server jar fetched from
Maven at run time); the portable path runs for real in test_portable_beam.py.
"""

from __future__ import annotations

import pytest
import yaml

from pipelines.beam_options import REQUIRED_OPTIONS, pipeline_options
from pipelines.config import BEAM_RUNNERS, BEAM_STEPS, REPO_ROOT, Beam, ConfigError, load_config
from pipelines.errors import UsageError

EXAMPLES = yaml.safe_load((REPO_ROOT / "docs" / "beam-runners.yaml").read_text())


def _with_beam(cfg, block: dict):
    return cfg.model_copy(update={"beam": Beam.model_validate(block)})


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_documented_examples_build_for_every_step(adult_cfg, name):
    block = EXAMPLES[name]
    cfg = _with_beam(adult_cfg, block)
    for step in BEAM_STEPS:
        runner, _ = cfg.beam.for_step(step)
        given = pipeline_options(cfg, step=step).get_all_options(drop_default=True)
        assert given["runner"] == ("FnApiRunner" if runner == "DirectRunner" else runner)
        for flag in REQUIRED_OPTIONS.get(runner, ()):
            assert given.get(flag), (name, step, flag)


def test_examples_cover_the_distributed_runners():
    runners = {b["runner"] for b in EXAMPLES.values()}
    assert {"DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner"} <= runners


def test_dataflow_example_values_reach_the_options(adult_cfg):
    from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions

    cfg = _with_beam(adult_cfg, EXAMPLES["dataflow"])
    options = pipeline_options(cfg, step="transform")
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region) == ("my-gcp-project", "europe-west1")
    assert gcp.temp_location.startswith("gs://")
    assert options.view_as(WorkerOptions).machine_type == "n2-highmem-4"  # the step's override
    ingest = pipeline_options(cfg, step="ingest").get_all_options()
    assert ingest["runner"] == "FnApiRunner" and ingest["machine_type"] is None


def test_step_override_of_runner_and_flags(adult_cfg):
    cfg = _with_beam(adult_cfg, {"runner": "DirectRunner", "options": ["--direct_num_workers=1"],
                                 "steps": {"evaluate": {"options": ["--direct_num_workers=2"]}}})
    assert pipeline_options(cfg, step="ingest").get_all_options()["direct_num_workers"] == 1
    assert pipeline_options(cfg, step="evaluate").get_all_options()["direct_num_workers"] == 2


def test_missing_required_flag_names_runner_step_and_flag(adult_cfg):
    cfg = _with_beam(adult_cfg, {"runner": "DirectRunner", "steps": {"transform": {
        "runner": "DataflowRunner", "options": ["--project=p", "--region=r"]}}})
    pipeline_options(cfg, step="ingest")  # the in-process steps are fine
    with pytest.raises(UsageError, match=r"step transform.*DataflowRunner needs --temp_location"):
        pipeline_options(cfg, step="transform")


def test_unknown_flag_and_bad_value_are_refused(adult_cfg):
    cfg = _with_beam(adult_cfg, {"options": ["--direct_num_wokers=2"]})
    with pytest.raises(UsageError, match="does not know the option.*--direct_num_wokers"):
        pipeline_options(cfg, step="ingest")
    cfg = _with_beam(adult_cfg, {"runner": "FlinkRunner",
                                 "options": ["--flink_master=h:8081", "--flink_version=0.1"]})
    with pytest.raises(UsageError, match="refused the options"):
        pipeline_options(cfg, step="ingest")


def test_unknown_runner_is_refused_at_load_with_the_accepted_list(tmp_path):
    text = (REPO_ROOT / "configs" / "adult.yaml").read_text()
    assert "runner: DirectRunner" in text
    bad = tmp_path / "adult.yaml"
    bad.write_text(text.replace("runner: DirectRunner", "runner: DataFlowRunner", 1))
    with pytest.raises(ConfigError, match="unknown Beam runner 'DataFlowRunner'") as err:
        load_config(bad)
    assert all(r in str(err.value) for r in BEAM_RUNNERS)


def test_flags_that_are_not_flags_are_refused_at_load():
    with pytest.raises(ValueError, match="--name or --name=value"):
        Beam(options=["project=p"])
    with pytest.raises(ValueError, match="train"):
        Beam.model_validate({"steps": {"train": {"runner": "DirectRunner"}}})
