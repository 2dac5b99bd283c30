"""Every task type trained for real on the Adult snapshot, served through `serving_default`.

Adult relabelled (tests/model/helpers.TASK_LABELS): income (binary), relationship (6 classes),
hours_per_week (regression), with the small tests/model/tiny_transform.py and two excluded
columns each. Checks what a user of the model checks: the signature's outputs and shapes, the
label and excluded columns are not needed to serve, multiclass probabilities sum to 1 and beat the
majority class, regression beats predicting the mean in the label's own units, the infra check
per task, and a transform that feeds the model from an excluded column is refused by name.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipelines.context import RunContext
from pipelines.errors import PipelineError
from tests.model.helpers import (
    RELATIONSHIPS,
    TASK_EXCLUDED,
    raw_examples,
    raw_values,
    task_config,
    without_features,
)

pytestmark = pytest.mark.slow

CTX = RunContext(run_id="pytest-model-tasks", triggered_by="test")
EXPECTED_OUTPUTS = {"binary": {"probabilities"},
                    "multiclass": {"probabilities", "class_ids", "classes"},
                    "regression": {"predictions"}}
N_EVAL = 100_000  # every eval row


@pytest.fixture(scope="module")
def build(adult_cfg, pipeline_home, snapshot):
    """build(task) -> (cfg, transform result, train result), each task transformed and trained once."""
    from pipelines.train import train
    from pipelines.transform import transform

    built: dict[str, tuple] = {}

    def _build(task: str):
        if task not in built:
            cfg = task_config(adult_cfg, task)
            t0 = time.perf_counter()
            xf = transform(cfg, pipeline_home, CTX, snapshot_uris=[snapshot["uri"]])
            t1 = time.perf_counter()
            trained = train(cfg, pipeline_home, CTX, transform_uri=xf["transform_uri"])
            t2 = time.perf_counter()
            head = trained["headline_metric"]
            print(f"\n{task}: transform {t1 - t0:.1f} s, train {t2 - t1:.1f} s "
                  f"({trained['metrics']['epochs_run']} epochs), {head} "
                  f"{trained['metrics'][head]:.4f}")
            built[task] = (cfg, xf, trained)
        return built[task]

    return _build


@pytest.fixture(scope="module", params=["binary", "multiclass", "regression"])
def task_model(request, build):
    return build(request.param)


@pytest.fixture(scope="module")
def eval_rows(snapshot):
    return raw_examples(snapshot["uri"], "eval", N_EVAL)


def _serve(model_uri: str, records: list[bytes]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    fn = tf.saved_model.load(model_uri).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(examples=tf.constant(records)).items()}


def test_train_result_names_its_metrics(task_model):
    cfg, _, trained = task_model
    headline = {"binary": "eval_auc", "multiclass": "eval_accuracy",
                "regression": "eval_rmse"}[cfg.task]
    assert trained["task"] == cfg.task and trained["headline_metric"] == headline
    assert headline in trained["metrics"] and "eval_loss" in trained["metrics"]
    assert ("eval_auc" in trained["metrics"]) == (cfg.task == "binary")
    assert trained["output_key"] == ("predictions" if cfg.task == "regression" else "probabilities")
    assert set(trained["signature_outputs"]) == EXPECTED_OUTPUTS[cfg.task]
    assert 1 <= trained["metrics"]["best_epoch"] <= trained["metrics"]["epochs_run"]


def test_serving_outputs_and_shapes_without_label_or_excluded_columns(task_model, eval_rows):
    cfg, _, trained = task_model
    records = eval_rows[:500]
    dropped = [cfg.label.column, *TASK_EXCLUDED[cfg.task]]
    full = _serve(trained["model_uri"], records)
    bare = _serve(trained["model_uri"], without_features(records, dropped))
    assert set(full) == set(bare) == EXPECTED_OUTPUTS[cfg.task]
    for key in full:
        np.testing.assert_array_equal(full[key], bare[key])  # those columns change nothing
    n = len(records)
    if cfg.task == "binary":
        p = full["probabilities"]
        assert p.shape == (n, 1) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1
    elif cfg.task == "multiclass":
        p = full["probabilities"]
        assert p.shape == (n, len(RELATIONSHIPS)) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
        assert full["class_ids"].shape == (n,) and full["class_ids"].dtype == np.int64
        np.testing.assert_array_equal(full["class_ids"], p.argmax(axis=1))
        names = [c.decode() for c in full["classes"]]
        assert names == [RELATIONSHIPS[i] for i in full["class_ids"]]
    else:
        y = full["predictions"]
        assert y.shape == (n, 1) and y.dtype == np.float32 and np.all(np.isfinite(y))


def test_quality_beats_the_trivial_model_on_eval(task_model, eval_rows):
    cfg, _, trained = task_model
    out = _serve(trained["model_uri"], eval_rows)
    truth = raw_values(eval_rows, cfg.label.column)
    if cfg.task == "binary":
        from sklearn.metrics import roc_auc_score

        auc = roc_auc_score([t == ">50K" for t in truth], out["probabilities"][:, 0])
        print(f"binary eval AUC {auc:.4f}")
        assert auc > 0.85
    elif cfg.task == "multiclass":
        accuracy = float(np.mean([c.decode() == t for c, t in zip(out["classes"], truth,
                                                                  strict=True)]))
        majority = max(truth.count(c) for c in RELATIONSHIPS) / len(truth)
        print(f"multiclass eval accuracy {accuracy:.4f}, majority class {majority:.4f}")
        assert set(truth) <= set(RELATIONSHIPS)
        assert accuracy > majority + 0.2
        assert abs(accuracy - trained["metrics"]["eval_accuracy"]) < 1e-3  # Keras agrees
    else:
        y = np.asarray(truth, dtype=np.float64)
        rmse = float(np.sqrt(np.mean((out["predictions"][:, 0] - y) ** 2)))
        baseline = float(np.sqrt(np.mean((trained["label_stats"]["mean"] - y) ** 2)))
        print(f"regression eval RMSE {rmse:.3f} (hours), predicting the train mean {baseline:.3f}")
        assert rmse < 0.97 * baseline
        # Predictions are in hours (the target's units), not z-scores.
        assert 30 < float(out["predictions"].mean()) < 50
        assert abs(rmse - trained["metrics"]["eval_rmse"]) < 0.01 * rmse


def test_curves_plot_the_task_headline(task_model):
    import json
    from pathlib import Path

    cfg, _, trained = task_model
    curves = json.loads(Path(trained["curves_json"]).read_text())
    metric = trained["headline_metric"].removeprefix("eval_")
    assert {"loss", "val_loss", metric, f"val_{metric}"} <= set(curves)
    assert Path(trained["curves_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_transform_reading_an_excluded_column_is_refused_by_name(adult_cfg, build,
                                                                   pipeline_home):
    """tiny_transform reads occupation: excluding it must stop training and export, naming it."""
    import tensorflow_transform as tft

    from pipelines import model as model_lib
    from pipelines.train import check_serving_inputs, train

    cfg, xf, _ = build("multiclass")
    bad = task_config(adult_cfg, cfg.task, excluded=[*TASK_EXCLUDED[cfg.task], "occupation"])
    tft_output = tft.TFTransformOutput(xf["transform_graph_uri"])
    numeric, categorical = model_lib.split_features(tft_output, model_lib.label_key(bad))
    with pytest.raises(PipelineError, match=r"column 'occupation' \(role excluded\) feeds "
                                            r"occupation_xf"):
        check_serving_inputs(bad, tft_output, numeric + list(categorical))
    t0 = time.perf_counter()
    with pytest.raises(PipelineError, match="'occupation'"):
        train(bad, pipeline_home, CTX, transform_uri=xf["transform_uri"])
    assert time.perf_counter() - t0 < 30  # refused before training


def test_infra_check_per_task(task_model, snapshot, tmp_path):
    """In-process run() for each task; one fresh-process check with more rows asked than exist."""
    from pipelines import infra_check
    from pipelines.snapshots import split_pattern

    cfg, _, trained = task_model
    pattern = split_pattern(snapshot["uri"], "eval")
    classes = cfg.label.classes
    ok = infra_check.run(trained["model_uri"], pattern, 50, cfg.task, classes)
    assert ok["passed"], ok["reasons"]
    assert ok["examples"] == 50 and ok["notes"] == []
    assert set(ok["outputs"]) == EXPECTED_OUTPUTS[cfg.task]
    wrong = "regression" if cfg.task != "regression" else "binary"
    refused = infra_check.run(trained["model_uri"], pattern, 10, wrong)
    assert not refused["passed"] and "expects" in refused["reasons"][0]
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    none = infra_check.run(trained["model_uri"], str(empty), 10, cfg.task, classes)
    assert not none["passed"] and "no examples" in none["reasons"][0]
    if cfg.task == "multiclass":
        fresh = infra_check.check(trained["model_uri"], pattern, n=10_000_000, task=cfg.task,
                                  classes=classes)
        assert fresh["passed"], fresh["reasons"]
        assert fresh["examples"] < 10_000_000 and "fewer than the 10000000 asked" in fresh["notes"][0]
        assert fresh["output_shapes"]["probabilities"] == [fresh["examples"], len(classes)]


def test_warm_start_from_another_task_keeps_the_head_fresh_and_says_so(adult_cfg, build,
                                                                       tmp_path):
    """Binary model -> multiclass model: the 1-unit head cannot fill the 6-unit one."""
    _, _, binary = build("binary")
    cfg, xf, _ = build("multiclass")
    from pipelines.train import train

    one_epoch = task_config(adult_cfg, "multiclass", epochs=1)
    warm = train(one_epoch, tmp_path, CTX, transform_uri=xf["transform_uri"],
                 warm_start_from=binary["model_uri"])
    fresh = warm["warm_start"]["fresh"]
    assert warm["warm_start"]["skipped"] == len(fresh) > 0
    assert {"deep_logit/kernel:0", "deep_logit/bias:0", "wide/bias:0"} <= set(fresh)
    assert warm["warm_start"]["copied"] > 0  # what matches (e.g. the second hidden layer) is kept
