"""The columns evaluate adds to each record batch (slice buckets, TFMA label) and the metrics it
derives from TFMA's raw values: pure functions, no Beam pipeline."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pipelines import eval_tfma
from pipelines.config import parse_config
from tests.eval.conftest import adult_raw, task_config


def _batch(columns: dict[str, list]) -> pa.RecordBatch:
    """A record batch as TFXIO decodes tf.Examples: every column a list column."""
    arrays = []
    for values in columns.values():
        sample = next((v for cell in values for v in cell), 0)
        typ = pa.binary() if isinstance(sample, bytes) else (
            pa.int64() if isinstance(sample, int) else pa.float32())
        arrays.append(pa.array(values, pa.list_(typ)))
    return pa.RecordBatch.from_arrays(arrays, list(columns))


def _cfg(**label_and_columns):
    raw = adult_raw()
    raw["sample_data"] = None
    raw.update(label_and_columns)
    return parse_config(raw)


def test_buckets_are_named_from_the_boundaries_and_missing_is_its_own_bucket():
    b = [25, 35, 45, 55, 65]
    assert eval_tfma.bucketize([17, 25, 34, 35, 64, 65, 90], b, integer=True) == \
        ["<25", "25-34", "25-34", "35-44", "55-64", "65+", "65+"]
    assert eval_tfma.bucketize([None, float("nan"), 1.0], [2.5, 5.0], integer=False) == \
        ["missing", "missing", "<2.5"]
    assert eval_tfma.bucket_names([2.5, 5.0, 10.0], integer=False) == \
        ["<2.5", "[2.5, 5)", "[5, 10)", ">=10"]
    assert eval_tfma.bucket_names([1, 2], integer=True) == ["<1", "1", "2+"]


def test_add_columns_buckets_the_configured_column_not_a_fixed_one(adult_cfg):
    # A use case without `age`: the slice feature reads the column its config names.
    raw = adult_raw()
    raw["sample_data"] = None
    raw["columns"] = [{"name": "years" if c["name"] == "age" else c["name"], **{
        k: v for k, v in c.items() if k != "name"}} for c in raw["columns"]]
    raw["columns"][0]["nullable"] = True
    raw["evaluation"]["slice_features"] = {"years_bucket": {"column": "years",
                                                            "boundaries": [30, 60]}}
    raw["evaluation"]["slices"] = [[], ["years_bucket"], ["sex"]]
    cfg = parse_config(raw)
    batch = _batch({"years": [[20], [], [70]], "income": [[b">50K"], [b"<=50K"], [b"<=50K"]]})
    out = eval_tfma.add_columns(cfg, "eval")(batch)
    col = out.column(out.schema.get_field_index("years_bucket")).to_pylist()
    assert col == [[b"<30"], [b"missing"], [b"60+"]]
    assert out.column(out.schema.get_field_index(eval_tfma.LABEL_KEY)).to_pylist() == [[1], [0], [0]]
    assert out.column(out.schema.get_field_index(eval_tfma.DATASET_KEY)).to_pylist() == \
        [[b"eval"]] * 3
    # A nullable column absent from a whole batch (no row has it): every row is `missing`.
    out = eval_tfma.add_columns(cfg, "eval")(_batch({"income": [[b">50K"]]}))
    assert out.column(out.schema.get_field_index("years_bucket")).to_pylist() == [[b"missing"]]


def test_a_missing_slice_column_raises_naming_it(adult_cfg):
    batch = _batch({"income": [[b">50K"]], "sex": [[b"Male"]]})
    with pytest.raises(ValueError, match="no column 'age'"):
        eval_tfma.add_columns(adult_cfg, "golden")(batch)


def test_int_label_column_is_compared_as_int():
    cols = adult_raw()["columns"]
    cols = [c for c in cols if c["name"] != "income"] + [{"name": "high", "type": "int"}]
    cfg = _cfg(columns=cols, label={"column": "high", "task": "binary", "classes": [0, 1],
                                    "positive_class": 1})
    assert eval_tfma.encode_labels(cfg, [0, 1, 1, 0]) == [0, 1, 1, 0]
    with pytest.raises(ValueError, match=r"value\(s\) 2 are not in label.classes \[0, 1\]"):
        eval_tfma.encode_labels(cfg, [0, 1, 2])
    # the positive class may be 0: compared in the column's type, never by accident
    cfg0 = _cfg(columns=cols, label={"column": "high", "task": "binary", "classes": [0, 1],
                                     "positive_class": 0})
    assert eval_tfma.encode_labels(cfg0, [0, 1]) == [1, 0]


def test_string_label_column_binary_and_multiclass(adult_cfg, multiclass_cfg):
    assert eval_tfma.encode_labels(adult_cfg, [b">50K", b"<=50K", ">50K"]) == [1, 0, 1]
    with pytest.raises(ValueError, match="'>50K.'"):
        eval_tfma.encode_labels(adult_cfg, [b">50K."])
    assert eval_tfma.encode_labels(multiclass_cfg, [b"White", b"Other", b"Black"]) == [0, 4, 1]
    with pytest.raises(ValueError, match="'Martian'"):
        eval_tfma.encode_labels(multiclass_cfg, [b"White", b"Martian"])
    with pytest.raises(ValueError, match="has no label"):
        eval_tfma.encode_labels(multiclass_cfg, [None])


def test_regression_label_is_float(regression_cfg):
    assert eval_tfma.encode_labels(regression_cfg, [40, 12]) == [40.0, 12.0]
    batch = _batch({"hours_per_week": [[40], [12]], "age": [[30], [70]]})
    out = eval_tfma.add_columns(regression_cfg, "eval")(batch)
    label = out.column(out.schema.get_field_index(eval_tfma.LABEL_KEY))
    assert label.type == pa.list_(pa.float32()) and label.to_pylist() == [[40.0], [12.0]]


def test_binary_one_class_slice_auc_is_undefined_not_zero(adult_cfg):
    raw = {"example_count": 300.0, "mean_label": 0.0, "auc": 0.0, "auc_precision_recall": 0.0,
           "binary_accuracy": 0.9, "precision": float("nan"), "recall": float("nan"),
           "fpr": 0.1, "fnr": float("nan"), "predicted_positive_rate": 0.1, "f1_score": 0.0,
           "calibration": float("nan"), "mean_prediction": 0.1, "binary_crossentropy": 0.2}
    out, why = eval_tfma.derive(adult_cfg, raw)
    assert out["auc"] is None and "one class only (0 positive, 300 negative)" in why["auc"]
    assert out["recall"] is None and out["fnr"] is None and out["auc_pr"] is None
    assert out["accuracy"] == 0.9 and out["fpr"] == 0.1 and out["positive_rate"] == 0.1
    assert set(eval_tfma.METRICS["binary"]) == set(out)


def test_multiclass_metrics_from_the_confusion_matrix(multiclass_cfg):
    k = len(multiclass_cfg.label.classes)
    cm = np.zeros((k, k))
    cm[0, 0], cm[0, 1], cm[1, 1], cm[1, 0], cm[2, 2] = 50, 10, 30, 10, 0
    cm[2, 0] = 5  # class 2 present but never predicted right; classes 3, 4 absent
    aucs = np.array([0.9, 0.8, 0.7, np.nan, np.nan])
    out, why = eval_tfma.derive(multiclass_cfg, {"example_count": 105.0,
                                                 "multiclass_confusion": cm,
                                                 "multiclass_auc": aucs,
                                                 "multiclass_log_loss": 0.5})
    assert out["accuracy"] == pytest.approx(80 / 105)
    assert out["recall[White]"] == pytest.approx(50 / 60)
    assert out["precision[White]"] == pytest.approx(50 / 65)
    assert out["recall[Asian-Pac-Islander]"] == 0.0
    assert out["precision[Asian-Pac-Islander]"] is None and "no example predicted" in \
        why["precision[Asian-Pac-Islander]"]
    assert out["recall[Other]"] is None and out["auc[Other]"] is None
    assert out["macro_recall"] == pytest.approx((50 / 60 + 30 / 40 + 0) / 3)
    assert out["macro_auc"] == pytest.approx(0.8)
    one = np.zeros((k, k))
    one[1, 1] = 20
    out, why = eval_tfma.derive(multiclass_cfg, {"example_count": 20.0,
                                                 "multiclass_confusion": one,
                                                 "multiclass_auc": np.full(k, np.nan),
                                                 "multiclass_log_loss": 0.1})
    assert out["macro_auc"] is None and "one class only (Black)" in why["macro_auc"]
    assert out["accuracy"] == 1.0


def test_regression_metrics_and_constant_label(regression_cfg):
    y, p = np.array([10.0, 20.0, 30.0, 40.0]), np.array([12.0, 18.0, 33.0, 37.0])
    r = y - p
    sums = np.array([4, y.sum(), (y * y).sum(), p.sum(), r.sum(), abs(r).sum(), (r * r).sum()])
    out, why = eval_tfma.derive(regression_cfg, {"example_count": 4.0, "regression_sums": sums})
    assert out["mae"] == pytest.approx(2.5) and out["rmse"] == pytest.approx(math.sqrt(6.5))
    assert out["r2"] == pytest.approx(1 - 26 / 500) and not why
    assert out["mean_residual"] == pytest.approx(0.0) and out["mean_label"] == 25.0
    const = np.array([3, 120.0, 4800.0, 111.0, 9.0, 9.0, 27.0])
    out, why = eval_tfma.derive(regression_cfg, {"example_count": 3.0, "regression_sums": const})
    assert out["r2"] is None and "constant" in why["r2"] and out["rmse"] == 3.0


def test_value_bins_cover_any_scale():
    from pipelines.tfma_metrics import HALF, N_VALUE_BINS, value_bin, value_bin_edges

    edges = value_bin_edges()
    assert len(edges) == N_VALUE_BINS
    for x in (-123456.0, -3.3, -0.01, 0.0, 0.0004, 0.5, 1.0, 40.0, 99.9, 2.5e6, 1e12):
        lo, hi = edges[value_bin(x)]
        inside = lo <= x < hi if x >= 0 else lo < x <= hi  # negative bins mirror positive ones
        assert inside or (x == 0 and value_bin(x) == HALF), (x, lo, hi)


def test_eval_config_per_task(adult_cfg, multiclass_cfg, regression_cfg):
    for cfg, key, names in ((adult_cfg, "probabilities", {"BinaryStats"}),
                            (multiclass_cfg, "probabilities", {"MulticlassStats", "ExampleCount"}),
                            (regression_cfg, "predictions", {"RegressionStats", "ExampleCount"})):
        config = eval_tfma.eval_config(cfg, with_baseline=False)
        assert {s.prediction_key for s in config.model_specs} == {key}
        got = {m.class_name for s in config.metrics_specs for m in s.metrics}
        assert names == got
        assert [list(s.feature_keys)[1:] for s in config.slicing_specs] == cfg.evaluation.slices
    assert task_config("binary").task == "binary"
