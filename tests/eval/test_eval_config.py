"""The TFMA EvalConfig holds the audit's metrics and slices, and nothing the model compiled in."""

from __future__ import annotations

from pipelines.eval_tfma import eval_config


def test_eval_config_slices_metrics_and_no_compiled_metrics(adult_cfg):
    config = eval_config(adult_cfg, with_baseline=True)
    # The model's compiled Keras metrics would cost a combiner per model and their `auc` would
    # shadow TFMA's AUC under the same key: only the configured metrics are computed.
    assert config.options.include_default_metrics.value is False
    assert len(config.model_specs) == 2
    specs = [list(s.feature_keys) for s in config.slicing_specs]
    assert len(specs) == len(adult_cfg.evaluation.slices)
    assert all(s[1:] == want for s, want in zip(specs, adult_cfg.evaluation.slices, strict=True))
    names = {m.class_name for spec in config.metrics_specs for m in spec.metrics}
    assert names == {"BinaryStats"}  # every binary metric and plot in one fused combiner
