"""Model behaviour on real rows through `serving_default` (Made-With-ML tests/model style).

Quality on the golden set (adult.test), invariance to the census sampling weight, direction for
education, the training curves artifact, re-use of an existing model and warm start.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.context import RunContext
from pipelines.errors import PipelineError
from pipelines.train import train
from tests.model.helpers import labels, predict, raw_examples, with_int_feature

pytestmark = pytest.mark.slow

CTX = RunContext(run_id="pytest-model", triggered_by="test")
GOLDEN_AUC_MIN = 0.915


@pytest.fixture(scope="module")
def serve(trained):
    import tensorflow as tf

    return tf.saved_model.load(trained["model_uri"]).signatures["serving_default"]


@pytest.fixture(scope="module")
def eval_rows(snapshot):
    return raw_examples(snapshot["uri"], "eval", 1000)


def test_golden_set_auc(serve, golden, adult_cfg):
    from sklearn.metrics import roc_auc_score

    records = raw_examples(golden["uri"], "test", 100_000)
    assert len(records) == 16281
    y = labels(records, adult_cfg.label.column, adult_cfg.label.positive_class)
    auc = roc_auc_score(y, predict(serve, records))
    print(f"golden AUC {auc:.4f}")
    assert auc >= GOLDEN_AUC_MIN


def test_fnlwgt_change_of_one_percent_barely_moves_predictions(serve, eval_rows):
    base = predict(serve, eval_rows)
    for factor in (0.99, 1.01):
        moved = predict(serve, with_int_feature(eval_rows, "fnlwgt", lambda v, f=factor: round(v * f)))
        delta = np.abs(moved - base)
        assert delta.mean() < 0.005 and np.quantile(delta, 0.99) < 0.05, (factor, delta.max())


def test_more_education_does_not_lower_mean_prediction(serve, eval_rows):
    base = predict(serve, eval_rows)
    more = predict(serve, with_int_feature(eval_rows, "education_num", lambda v: min(v + 2, 16)))
    assert more.mean() >= base.mean()


def test_curves_artifact_and_metrics(trained):
    curves = json.loads(Path(trained["curves_json"]).read_text())
    assert {"loss", "auc", "val_loss", "val_auc"} <= set(curves)
    assert len(curves["loss"]) == trained["metrics"]["epochs_run"] >= 1
    assert Path(trained["curves_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert trained["metrics"]["eval_auc"] > 0.9
    kinds = {o["kind"] for o in trained["outputs"]}
    assert kinds == {"Model", "Curves", "CurvesPlot"}  # results.ArtifactKind
    assert trained["inputs"][0]["kind"] == "TransformGraph"


def test_rerun_reuses_the_model(adult_cfg, pipeline_home, transformed, trained):
    again = train(adult_cfg, pipeline_home, CTX, transform_uri=transformed["transform_uri"])
    assert again["reused"] and again["model_uri"] == trained["model_uri"]


def test_warm_start_copies_every_variable(adult_cfg, tmp_path, transformed, trained):
    cfg = adult_cfg.model_copy(update={"model": adult_cfg.model.model_copy(update={"epochs": 1})})
    warm = train(cfg, tmp_path, CTX, transform_uri=transformed["transform_uri"],
                 warm_start_from=trained["model_uri"])
    assert warm["warm_start"]["copied"] > 0 and warm["warm_start"]["skipped"] == 0
    assert any(i["properties"].get("role") == "warm_start" for i in warm["inputs"])
    assert warm["model_id"] != trained["model_id"]


def test_bad_transform_uri_and_warm_start_are_clear_errors(adult_cfg, tmp_path, transformed):
    with pytest.raises(PipelineError, match="not a transform artifact"):
        train(adult_cfg, tmp_path, CTX, transform_uri=str(tmp_path))
    with pytest.raises(PipelineError, match="holds no saved_model.pb"):
        train(adult_cfg, tmp_path, CTX, transform_uri=transformed["transform_uri"],
              warm_start_from=str(tmp_path))
