"""The fused binary combiner (pipelines.tfma_metrics.BinaryStats) equals TFMA's stock metrics.

One real Beam pipeline over 4,000 real Adult rows runs TFMA twice on the same examples: once with
TFMA's stock metrics and plots (eval_tfma.stock_binary_metrics), once with the fused combiner that
the evaluate step configures (eval_tfma.eval_config). Two models (candidate and baseline) score
every row: their scores are features of the examples (TFMA's model-free path, prediction_key), a
logistic of real Adult columns, so the test needs no training. The rows and curves that
eval_tfma.load_rows / load_curves build from each output (what blessing and the report read) must
agree: counts and threshold metrics exactly, means and log loss to float precision, AUC and AUC-PR
to the 10,000-bucket histogram's precision. The fused run's bootstrap intervals (same pass) must
hold the exact values and narrow as slices grow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines import eval_tfma
from tests.conftest import RAW_DIR

pytestmark = pytest.mark.slow
ROWS = 4000
SLICES = [[], ["sex"], ["race"]]


def _scores(rows) -> tuple[list[float], list[float]]:
    """Two deterministic, different, well-spread scores from real columns."""
    a, b = [], []
    for r in rows:
        age, edu, hours = float(r[0]), float(r[4]), float(r[12])
        married = r[5].startswith("Married")
        za = -8.5 + 0.04 * age + 0.35 * edu + 0.03 * hours + 1.8 * married
        zb = -6.0 + 0.03 * age + 0.25 * edu + 0.02 * hours + 1.2 * married + 0.3 * (r[9] == "Male")
        a.append(1 / (1 + math.exp(-za)))
        b.append(1 / (1 + math.exp(-zb)))
    return a, b


def _examples() -> list[bytes]:
    import tensorflow as tf

    lines = [ln for ln in (RAW_DIR / "adult.data").read_text().splitlines() if ln.strip()]
    rows = [[c.strip() for c in ln.split(",")] for ln in lines[:ROWS]]
    a, b = _scores(rows)
    out = []
    keys = eval_tfma.example_keys([",".join(r).encode() + b"#%d" % i for i, r in enumerate(rows)])
    for r, sa, sb, key in zip(rows, a, b, keys, strict=True):
        f = {eval_tfma.EXAMPLE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[key])),
             "__label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(r[14] == ">50K")])),
             "__dataset": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"eval"])),
             "sex": tf.train.Feature(bytes_list=tf.train.BytesList(value=[r[9].encode()])),
             "race": tf.train.Feature(bytes_list=tf.train.BytesList(value=[r[8].encode()])),
             "score_a": tf.train.Feature(float_list=tf.train.FloatList(value=[sa])),
             "score_b": tf.train.Feature(float_list=tf.train.FloatList(value=[sb]))}
        out.append(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    return out


def _config(metrics):
    from google.protobuf.wrappers_pb2 import BoolValue
    from tensorflow_model_analysis.proto import config_pb2

    specs = [config_pb2.ModelSpec(name=eval_tfma.CANDIDATE, label_key=eval_tfma.LABEL_KEY,
                                  prediction_key="score_a"),
             config_pb2.ModelSpec(name=eval_tfma.BASELINE, label_key=eval_tfma.LABEL_KEY,
                                  prediction_key="score_b", is_baseline=True)]
    return config_pb2.EvalConfig(
        model_specs=specs,
        slicing_specs=[config_pb2.SlicingSpec(feature_keys=[eval_tfma.DATASET_KEY, *s])
                       for s in SLICES],
        metrics_specs=[config_pb2.MetricsSpec(
            metrics=metrics, model_names=[eval_tfma.CANDIDATE, eval_tfma.BASELINE])],
        options=config_pb2.Options(include_default_metrics=BoolValue(value=False)))


@pytest.fixture(scope="module")
def outputs(adult_cfg, tmp_path_factory):
    """(stock output dir, fused output dir): both TFMA runs in one Beam pipeline."""
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tfx_bsl.tfxio import tf_example_record

    tmp = tmp_path_factory.mktemp("fused")
    data = tmp / "data.tfrecord"
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(data)) as w:
        for ex in _examples():
            w.write(ex)
    fused_metrics = list(eval_tfma.eval_config(adult_cfg, with_baseline=True)
                         .metrics_specs[0].metrics)
    assert [m.class_name for m in fused_metrics] == ["BinaryStats"]
    runs = {"stock": eval_tfma.stock_binary_metrics(adult_cfg.evaluation.decision_threshold),
            "per_example": fused_metrics, "fused": fused_metrics}
    with beam.Pipeline() as p:
        examples = p | tf_example_record.TFExampleRecord(
            file_pattern=str(data), raw_record_column_name=tfma.ARROW_INPUT_COLUMN).BeamSource()
        for name, metrics in runs.items():
            # stock and per_example: TFMA's default extractors and evaluator (per example);
            # fused: the batched extractors and evaluator the evaluate step runs
            _ = examples | f"TFMA[{name}]" >> eval_tfma.analysis(
                _config(metrics), [], tmp / name, batched=name == "fused")
    return tmp / "stock", tmp / "fused"


def _close(a, b, tol):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol


EXACT = ("example_count", "accuracy", "precision", "recall", "f1", "fpr", "fnr", "positive_rate")
FLOAT = ("mean_label", "mean_prediction", "calibration", "log_loss")


def test_fused_rows_equal_tfma_stock_metrics(adult_cfg, outputs):
    stock_dir, fused_dir = outputs
    stock = eval_tfma.load_rows(adult_cfg, stock_dir)
    fused = eval_tfma.load_rows(adult_cfg, fused_dir)
    assert [r["name"] for r in fused] == [r["name"] for r in stock]
    assert len(stock) > 5  # overall + both sexes + the races
    worst_auc = 0.0
    for s, f in zip(stock, fused, strict=True):
        for model in (eval_tfma.CANDIDATE, eval_tfma.BASELINE):
            sm, fm = s[model], f[model]
            assert set(fm) == set(sm) == set(eval_tfma.METRICS["binary"])
            assert sm["example_count"] == fm["example_count"]
            for m in EXACT:  # the same counts at the decision threshold
                assert _close(sm[m], fm[m], 1e-12), (s["name"], model, m, sm[m], fm[m])
            for m in FLOAT:
                assert _close(sm[m], fm[m], 1e-6 * max(1.0, abs(sm[m] or 0))), \
                    (s["name"], model, m, sm[m], fm[m])
            for m in ("auc", "auc_pr"):  # the 10,000-bucket histogram's precision
                assert _close(sm[m], fm[m], 2e-3), (s["name"], model, m, sm[m], fm[m])
                if sm[m] is not None:
                    worst_auc = max(worst_auc, abs(sm[m] - fm[m]))
            assert s["undefined"].get(model) == f["undefined"].get(model)
    overall = next(r for r in fused if not r["slice"])
    assert 0.6 < overall[eval_tfma.CANDIDATE]["auc"] < 0.95  # a real, non-trivial score
    print(f"largest |AUC or AUC-PR difference| fused vs stock: {worst_auc:.2e}")
    assert worst_auc < 2e-3


def test_fused_curves_equal_tfma_stock_plots(adult_cfg, outputs):
    stock_dir, fused_dir = outputs
    thr = adult_cfg.evaluation.decision_threshold
    stock = eval_tfma.load_curves(adult_cfg, stock_dir)
    fused = eval_tfma.load_curves(adult_cfg, fused_dir)
    assert set(stock) == set(fused) == {"eval"}
    for model in (eval_tfma.CANDIDATE, eval_tfma.BASELINE):
        s, f = stock["eval"][model], fused["eval"][model]
        assert set(f) == set(s) == {"roc", "calibration", "confusion_matrices"}
        # Calibration buckets: the same 10 score ranges, the same counts and means.
        assert [b["count"] for b in f["calibration"]] == [b["count"] for b in s["calibration"]]
        for bs, bf in zip(s["calibration"], f["calibration"], strict=True):
            assert (bf["low"], bf["high"]) == pytest.approx((bs["low"], bs["high"]), abs=1e-12)
            assert bf["mean_label"] == pytest.approx(bs["mean_label"], abs=1e-9)
            assert bf["mean_prediction"] == pytest.approx(bs["mean_prediction"], abs=1e-6)
        # ROC: the same curve (area within the histogram's precision), from (1, 1) to (0, 0).
        def area(roc):
            pts = np.array(sorted(roc))
            return float(np.trapezoid(pts[:, 1], pts[:, 0]))
        assert f["roc"][0] == [1.0, 1.0] and f["roc"][-1] == [0.0, 0.0]
        assert area(f["roc"]) == pytest.approx(area(s["roc"]), abs=5e-3)
        # Confusion matrices near the report's thresholds: within the rows of one plot step.
        n = sum(f["confusion_matrices"][0][k] for k in ("tp", "fp", "tn", "fn"))
        assert n == ROWS
        for ms, mf in zip(s["confusion_matrices"], f["confusion_matrices"], strict=True):
            assert mf["threshold"] == pytest.approx(ms["threshold"], abs=2e-3)
            for k in ("tp", "fp", "tn", "fn"):
                assert abs(mf[k] - ms[k]) <= 0.01 * ROWS, (model, ms, mf)
        at = next(m for m in f["confusion_matrices"] if m["threshold"] == pytest.approx(thr))
        assert at["tp"] + at["fn"] == pytest.approx(
            next(r for r in eval_tfma.load_rows(adult_cfg, fused_dir) if not r["slice"])
            [model]["mean_label"] * ROWS)


def test_fused_auc_is_exact_to_the_bucket_width_on_small_lopsided_slices():
    """On slices like `age_bucket=<25` (11 positives in ~1,100 rows) TFMA's stock AUC moved by up to
    0.011 against the fused one; the fused AUC equals the exact (rank) AUC within two pairs."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from pipelines.tfma_metrics import _auc_roc

    rng = np.random.default_rng(0)
    buckets = 10_000
    for _ in range(50):
        y = np.r_[np.ones(11), np.zeros(1078)]
        s = np.clip(np.r_[rng.beta(2, 3, 11) * 0.6 + 0.2, rng.beta(1, 8, 1078)], 0, 1 - 1e-9)
        b = np.minimum((s * buckets).astype(int), buckets - 1)
        pos = np.bincount(b, weights=y, minlength=buckets)
        neg = np.bincount(b, minlength=buckets) - pos
        tp = np.r_[np.cumsum(pos[::-1])[::-1], 0.0]
        fp = np.r_[np.cumsum(neg[::-1])[::-1], 0.0]
        # ties inside one 1e-4 bucket count half a pair: within two pairs of the exact value
        assert abs(_auc_roc(tp, fp, tp[0], fp[0]) - roc_auc_score(y, s)) <= 2 / (11 * 1078)


def test_fused_intervals_hold_the_exact_values_and_narrow_with_rows(adult_cfg, outputs):
    """Every AUC interval holds TFMA's stock AUC and the exact rank AUC of its slice; the interval
    of the AUC change holds the change; widths shrink about as 1/sqrt(rows)."""
    stock_dir, fused_dir = outputs
    stock = {r["name"]: r for r in eval_tfma.load_rows(adult_cfg, stock_dir)}
    fused = eval_tfma.load_rows(adult_cfg, fused_dir)
    widths = []
    for r in fused:
        ci = r.get("intervals", {})
        for model in (eval_tfma.CANDIDATE, eval_tfma.BASELINE):
            auc = r[model]["auc"]
            if auc is None:
                assert "auc" not in ci.get(model, {})
                continue
            if "auc" not in ci.get(model, {}):  # too few of one class for 90% of replicates
                assert r[model]["example_count"] * r[model]["mean_label"] < 5, r["name"]
                continue
            lo, hi = ci[model]["auc"]
            assert lo <= auc <= hi and lo <= stock[r["name"]][model]["auc"] <= hi, (r["name"], model)
            for m in ("accuracy", "recall", "fnr", "fpr"):
                if r[model][m] is not None:
                    assert ci[model][m][0] <= r[model][m] <= ci[model][m][1], (r["name"], m)
            if model == eval_tfma.CANDIDATE and "auc_change" in ci[model]:
                widths.append((r[model]["example_count"], hi - lo))
                delta = auc - r[eval_tfma.BASELINE]["auc"]
                assert ci[model]["auc_change"][0] <= delta <= ci[model]["auc_change"][1]
    from sklearn.metrics import roc_auc_score

    lines = [ln for ln in (RAW_DIR / "adult.data").read_text().splitlines() if ln.strip()]
    rows = [[c.strip() for c in ln.split(",")] for ln in lines[:ROWS]]
    exact = roc_auc_score([r[14] == ">50K" for r in rows], _scores(rows)[0])
    overall = next(r for r in fused if not r["slice"])
    lo, hi = overall["intervals"][eval_tfma.CANDIDATE]["auc"]
    assert lo <= exact <= hi and 0.005 < hi - lo < 0.05
    widths.sort()
    assert len(widths) >= 4
    (n_small, w_small), (n_big, w_big) = widths[0], widths[-1]
    assert n_big == ROWS and n_small < ROWS / 10
    assert w_small > 2 * w_big  # far fewer rows: a far wider interval


def _tfma_output(path):
    """Every metric, plot and validation TFMA wrote, per slice: {slice: {key: value}}."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    out: dict = {}
    for kind, load, field in (("metric", tfma.load_metrics, "metric_keys_and_values"),
                              ("plot", tfma.load_plots, "plot_keys_and_values")):
        for m in load(str(path)):
            per = out.setdefault(m.slice_key.SerializeToString(deterministic=True), {})
            for kv in getattr(m, field):
                per[(kind, kv.key.SerializeToString(deterministic=True))] = \
                    json_format.MessageToDict(kv.value)
    validation = tfma.load_validation_result(str(path))
    return out, json_format.MessageToDict(validation)


def _same(a, b, where):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_batched_evaluation_writes_what_the_per_example_path_writes(outputs):
    """The batched extractors and evaluator (what the evaluate step runs) write the same TFMA
    files as TFMA's own per-example path with the same fused metric: every slice, every metric,
    diff (vs the baseline), bootstrap interval and plot, and the validation result."""
    _, fused_dir = outputs
    batched, batched_validation = _tfma_output(fused_dir)
    per_example, per_example_validation = _tfma_output(fused_dir.parent / "per_example")
    assert len(batched) == len(per_example) > 5
    assert sum(len(v) for v in batched.values()) > 40 * len(batched)  # metrics, CIs, diffs, plots
    _same(batched, per_example, "output")
    assert batched_validation == per_example_validation


def test_batched_slices_are_tfma_slices():
    """slice_membership (per record batch, numpy) gives each row the slice keys TFMA's slicer gives
    it: multi-valued cells (every combination), missing cells and absent columns (no slice),
    int values, a repeated value and a repeated spec (each row once per slice key)."""
    import numpy as np
    import pyarrow as pa
    from tensorflow_model_analysis.proto import config_pb2
    from tensorflow_model_analysis.slicer import slicer_lib

    from pipelines.tfma_metrics import slice_membership

    rng = np.random.default_rng(3)
    n = 300
    sex = [[rng.choice([b"Male", b"Female"])] for _ in range(n)]
    race = [[] if i % 17 == 0 else [rng.choice([b"White", b"Black", b"Other"])] for i in range(n)]
    tags = [list(rng.choice([b"a", b"b", b"c"], size=i % 4)) for i in range(n)]  # 0..3 values
    tags[5] = [b"a", b"a"]
    age = [[int(rng.integers(20, 25))] for _ in range(n)]
    batch = pa.RecordBatch.from_pydict(
        {"sex": sex, "race": race, "tags": tags, "age": age},
        schema=pa.schema([("sex", pa.list_(pa.binary())), ("race", pa.list_(pa.binary())),
                          ("tags", pa.large_list(pa.binary())), ("age", pa.list_(pa.int64()))]))
    specs = [(), ("sex",), ("race", "sex"), ("tags",), ("sex", "tags", "age"), ("sex",),
             ("absent",), ("race", "absent")]
    ours: list[set] = [set() for _ in range(n)]
    for key, rows in slice_membership(batch, specs):
        assert len(set(rows.tolist())) == len(rows)
        for r in rows:
            assert key not in ours[r]
            ours[r].add(key)
    tfma_specs = [slicer_lib.SingleSliceSpec(spec=config_pb2.SlicingSpec(feature_keys=list(s)))
                  for s in specs]
    for i in range(n):
        features = {"sex": np.array(sex[i]), "race": np.array(race[i], dtype=object),
                    "tags": np.array(tags[i], dtype=object), "age": np.array(age[i])}
        expected = set(slicer_lib.get_slices_for_features_dicts([features], None, tfma_specs))
        assert ours[i] == expected, (i, ours[i] ^ expected)
    assert any(len(k) == 3 and k[2][0] == "tags" for s in ours for k in s)
