"""Beam pipeline options from the config, shared by every Beam step (ingest, transform).

Beam 2.77's ``DirectRunner`` first tries the Prism runner, which downloads a Go binary from GitHub
at run time: on a machine without that access it fails after a network timeout and falls back, and
when it does run it ignores ``--direct_running_mode`` / ``--direct_num_workers``. So for
``DirectRunner`` we name the in-process portable ``FnApiRunner`` directly: the runner DirectRunner
would have fallen back to, honouring the multi-processing flags. Any other runner is used as named.
"""

from __future__ import annotations

from pipelines.config import PipelineConfig


def pipeline_options(cfg: PipelineConfig, extra: list[str] | None = None):
    """``PipelineOptions`` for ``cfg.beam`` plus ``extra`` flags (which win)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    runner = "FnApiRunner" if cfg.beam.runner == "DirectRunner" else cfg.beam.runner
    return PipelineOptions([*cfg.beam.options, *(extra or [])], runner=runner,
                           save_main_session=False)
