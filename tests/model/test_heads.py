"""The model head per task, without data: output shapes, loss, metrics, label checks (fast)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pipelines import model as model_lib

HP = SimpleNamespace(hidden_units=[8], learning_rate=0.01)
BATCH = {"x_xf": np.array([[0.5], [-1.0], [2.0]], np.float32),
         "c_xf": np.array([[0], [3], [1]], np.int64)}


@pytest.mark.parametrize(("task", "k", "shape", "loss", "metrics"), [
    ("binary", None, (3, 1), "binary_crossentropy", {"auc", "accuracy"}),
    ("multiclass", 4, (3, 4), "sparse_categorical_crossentropy", {"accuracy", "top2_accuracy"}),
    ("regression", None, (3, 1), "mean_squared_error", {"rmse", "mae"}),
])
def test_head_per_task(task, k, shape, loss, metrics):
    model = model_lib.build_model(["x_xf"], {"c_xf": 5}, HP, task, k,
                                  target={"mean": 40.0, "std": 12.0})
    out = model(BATCH).numpy()
    assert out.shape == shape
    assert model.loss.name == loss
    assert metrics <= {m.name for m in model.compiled_metrics._user_metrics}
    assert {"hidden_0", "deep_logit", "wide"} <= {layer.name for layer in model.layers}
    if task == "multiclass":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    if task == "regression":  # an untrained net predicts about the mean, in the target's units
        assert np.all(np.abs(out - 40.0) < 12.0 * 3)


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match=r"class index in \[0, 1\], found \[2\]"):
        model_lib.label_stats(np.array([0, 1, 2, 1]), "binary", 2)
    with pytest.raises(ValueError, match=r"found \[-1\]"):
        model_lib.label_stats(np.array([0, 1, 2, -1]), "multiclass", 3)
    stats = model_lib.label_stats(np.array([0, 1, 2, 2]), "multiclass", 3)
    assert stats["class_counts"] == [1, 1, 2]
    reg = model_lib.label_stats(np.array([10.0, 20.0]), "regression", None)
    assert reg["mean"] == 15.0 and reg["std"] == 5.0
    with pytest.raises(ValueError, match="no rows"):
        model_lib.label_stats(np.array([]), "regression", None)
    with pytest.raises(ValueError, match="n_classes >= 3"):
        model_lib.build_model(["x_xf"], {}, HP, "multiclass", 2)
