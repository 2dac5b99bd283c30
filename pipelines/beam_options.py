"""Beam pipeline options from the config, per step (ingest, transform, evaluate).

Each Beam step takes its runner and flags from ``beam`` in the config: ``beam.runner`` and
``beam.options`` for every step, ``beam.steps.<step>.runner`` / ``.options`` to override one step
(e.g. transform on Dataflow, the rest in process). The runner name is checked when the config loads
(``pipelines.config.BEAM_RUNNERS``); the flags are checked here, when the step builds its options:
every flag must be one Beam knows, and each runner's required flags (:data:`REQUIRED_OPTIONS`) must
be present, so a missing ``--region`` fails in the first second with the step and the flag named,
not after a job submission. README "Deploying" has checked examples for Dataflow, Flink and Spark
(docs/beam-runners.yaml, tested in tests/deploy/test_beam_runners.py).

Beam 2.77's ``DirectRunner`` first tries the Prism runner, which downloads a Go binary from GitHub
at run time: on a machine without that access it fails after a network timeout and falls back, and
when it does run it ignores ``--direct_running_mode`` / ``--direct_num_workers``. So for
``DirectRunner`` we name the in-process portable ``FnApiRunner`` directly: the runner DirectRunner
would have fallen back to, honouring the multi-processing flags. Any other runner is used as named.
"""

from __future__ import annotations

from pipelines.config import BEAM_STEPS, PipelineConfig
from pipelines.errors import UsageError

# Flags a runner cannot start without (by their option names).
REQUIRED_OPTIONS: dict[str, tuple[str, ...]] = {
    "DataflowRunner": ("project", "region", "temp_location"),
    "FlinkRunner": ("flink_master",),
    "SparkRunner": ("spark_master_url",),
    "PortableRunner": ("job_endpoint",),
}


def step_options(cfg: PipelineConfig, step: str | None,
                 extra: list[str] | None = None) -> tuple[str, list[str]]:
    """(runner, flags) of ``step`` as the config sets them, plus ``extra`` flags (which win)."""
    if step is not None and step not in BEAM_STEPS:
        raise UsageError(f"unknown Beam step {step!r} (accepted: {', '.join(BEAM_STEPS)})")
    runner, flags = cfg.beam.for_step(step) if step else (cfg.beam.runner, list(cfg.beam.options))
    return runner, [*flags, *(extra or [])]


def pipeline_options(cfg: PipelineConfig, extra: list[str] | None = None,
                     step: str | None = None):
    """Checked ``PipelineOptions`` of ``step`` (its override of ``cfg.beam``) plus ``extra``.

    Raises UsageError naming the step and the flag when a flag is unknown to Beam or a flag the
    runner requires is missing.
    """
    from pipelines.beam_views import CachedViewOptions

    runner, flags = step_options(cfg, step, extra)
    where = f"beam (step {step})" if step else "beam"
    options = CachedViewOptions(flags, runner="FnApiRunner" if runner == "DirectRunner" else runner,
                              save_main_session=False)
    try:
        known = options.get_all_options()
        unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
    except SystemExit as exc:  # argparse exits on a bad value (its message is on stderr)
        raise UsageError(f"{where}: Beam refused the options {' '.join(flags)} (runner {runner}): "
                         "see the argparse message above") from exc
    if unknown:
        raise UsageError(f"{where}: Beam does not know the option(s) "
                         f"{', '.join('--' + u for u in unknown)} (runner {runner}); check the "
                         "spelling in the config's beam.options")
    given = options.get_all_options(drop_default=True)
    missing = [name for name in REQUIRED_OPTIONS.get(runner, ()) if given.get(name) in (None, "")]
    if missing:
        raise UsageError(f"{where}: {runner} needs {', '.join('--' + m for m in missing)}; add "
                         f"them to beam.options or beam.steps.<step>.options "
                         f"(README \"Deploying\" has an example for each runner)")
    return options
