"""The Adult data contract holds on the real data: every demo span, the window and the golden set."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pipelines import snapshots
from pipelines.config import REPO_ROOT, load_config
from pipelines.ingest import ingest
from pipelines.validate import validate
from tests.conftest import SPAN_DATES

pytestmark = pytest.mark.slow


def test_suite_is_a_gx_expectation_suite(adult_cfg):
    from great_expectations.core import ExpectationSuite

    raw = json.loads((REPO_ROOT / adult_cfg.validation.expectations).read_text())
    suite = ExpectationSuite(**raw)
    assert len(suite.expectations) == len(raw["expectations"]) >= 30
    columns = raw["expectations"][0]["kwargs"]["column_list"]
    assert columns == adult_cfg.column_names


def test_every_demo_span_is_accepted(adult_cfg, staged, ctx, tmp_path):
    home = tmp_path / "home"
    for i, day in enumerate(SPAN_DATES):
        snap = ingest(adult_cfg, home, ctx, span=day, landing=Path(staged["landing"]))
        result = validate(adult_cfg, home, ctx, snapshot_uri=snap["uri"])
        assert result["status"] == "accepted" and result["failures"] == []
        assert result["expectations"]["failed"] == 0 and result["rows"] == snap["rows"]["total"]
        if i == 0:
            assert result["baseline_uri"] is None and "skipped" in result["drift_note"]
        else:  # consecutive real spans never drift beyond the configured limits
            assert len(result["drift"]) == len(adult_cfg.columns)
            assert all(d["passed"] for d in result["drift"].values())
        assert snapshots.validation_status(snap["uri"]) == "accepted"
        assert Path(result["report_json"]).with_name("drift_profile.json").is_file()


def test_window_snapshot_is_accepted(snapshot):
    result = snapshot["validation"]
    assert result["status"] == "accepted" and result["rows"] == 32561
    assert result["expectations"]["run"] >= 30 and result["expectations"]["failed"] == 0
    assert Path(result["report_html"]).stat().st_size > 10_000


def test_golden_set_is_accepted(adult_cfg, pipeline_home, ctx, snapshot, golden):
    result = validate(adult_cfg, pipeline_home, ctx, snapshot_uri=golden["uri"])
    assert result["status"] == "accepted" and result["rows"] == 16281 and result["golden"]
    assert result["failures"] == [] and all(d["passed"] for d in result["drift"].values())


def test_revalidation_returns_the_stored_result(adult_cfg, pipeline_home, ctx, snapshot):
    again = validate(adult_cfg, pipeline_home, ctx, snapshot_uri=snapshot["uri"])
    assert again["reused"] and again["validated_at"] == snapshot["validation"]["validated_at"]


def test_a_changed_contract_validates_again(adult_cfg, staged, ctx, tmp_path):
    home = tmp_path / "home"
    snap = ingest(adult_cfg, home, ctx, span=SPAN_DATES[0], landing=Path(staged["landing"]))
    first = validate(adult_cfg, home, ctx, snapshot_uri=snap["uri"])
    drift = adult_cfg.validation.drift.model_copy(update={"numeric_js_max": 0.2})
    cfg = adult_cfg.model_copy(update={"validation": adult_cfg.validation.model_copy(
        update={"drift": drift})})
    second = validate(cfg, home, ctx, snapshot_uri=snap["uri"])
    assert not second["reused"] and second["contract_sha256"] != first["contract_sha256"]
    assert snapshots.validation_status(snap["uri"]) == "accepted"
    assert dt.datetime.fromisoformat(second["validated_at"]) >= dt.datetime.fromisoformat(
        first["validated_at"])


# -- reading a snapshot chunk by chunk (issue 11: validate's memory does not grow with rows) --------

def _example(values: dict) -> bytes:
    import tensorflow as tf

    feats = {}
    for name, v in values.items():
        if v is None:
            continue  # an absent feature: a missing cell of a nullable column
        v = v if isinstance(v, list) else [v]
        if isinstance(v[0], bytes | str):
            feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[x.encode() if isinstance(x, str) else x for x in v]))
        elif isinstance(v[0], float):
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=v))
        else:
            feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=v))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def _tf_frame(cfg, files):
    """The rows as TensorFlow parses them (tf.io.parse_example with the config's feature spec):
    what read_frame returned before it stopped importing TensorFlow."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    spec = snapshots.raw_feature_spec(cfg)
    parsed = tf.io.parse_example(tf.constant([r.numpy() for r in tf.data.TFRecordDataset(files)]),
                                 spec)
    out = {}
    for c in cfg.columns:
        t = parsed[c.name]
        if isinstance(t, tf.SparseTensor):
            rows = int(t.dense_shape[0])
            present = np.zeros(rows, dtype=bool)
            present[t.indices.numpy()[:, 0]] = True
            values = tf.sparse.to_dense(tf.sparse.slice(t, [0, 0], [rows, 1])).numpy().reshape(rows)
        else:
            present, values = None, t.numpy()
        if c.type == "string":
            s = pd.Series([v.decode("utf-8", "replace") for v in values], dtype=object)
        else:
            dtype = ("Int64" if c.nullable else "int64") if c.type == "int" else "float32"
            s = pd.Series(values, dtype=dtype)
        out[c.name] = s.mask(~present) if present is not None else s
    return pd.DataFrame(out, columns=cfg.column_names)


def test_chunked_reader_gives_tensorflows_values_without_tensorflow(tmp_path):
    """Nullable columns (absent cells, several values: the first counts), undecodable bytes and
    chunk boundaries: iter_frames and read_frame equal TensorFlow's parse of the same records."""
    import subprocess
    import sys

    import pandas as pd
    import tensorflow as tf

    cfg = load_config(REPO_ROOT / "configs" / "penguins.yaml")
    rows = []
    for i in range(23):
        rows.append({"species": ["Adelie", "Gentoo", "Chinstrap"][i % 3], "island": "Dream",
                     "bill_length_mm": None if i % 4 == 0 else 30.5 + i,
                     "bill_depth_mm": [15.25, 99.0] if i == 5 else (None if i % 5 == 0 else 17.0),
                     "flipper_length_mm": None if i % 6 == 0 else 180 + i,
                     "body_mass_g": None if i == 7 else 3000 + i,
                     "sex": None if i % 7 == 0 else (b"\xffmale" if i == 3 else "female"),
                     "year": 2007 + i % 3})
    split = tmp_path / "snap" / "train"
    split.mkdir(parents=True)
    for part in range(2):
        with tf.io.TFRecordWriter(str(split / f"data-{part:05d}-of-00002.tfrecord")) as w:
            for r in rows[part * 12:(part + 1) * 12]:
                w.write(_example(r))
    expected = _tf_frame(cfg, snapshots.data_files(tmp_path / "snap"))
    got = snapshots.read_frame(cfg, tmp_path / "snap")
    pd.testing.assert_frame_equal(got, expected)
    assert got["sex"][3] == "\ufffdmale" and pd.isna(got["body_mass_g"][7])
    assert got["bill_depth_mm"][5] == 15.25 and pd.isna(got["bill_depth_mm"][10])
    chunks = list(snapshots.iter_frames(cfg, tmp_path / "snap", rows=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    pd.testing.assert_frame_equal(pd.concat(chunks), expected)
    only = list(snapshots.iter_frames(cfg, tmp_path / "snap", rows=10, columns=["sex", "year"]))
    assert list(only[0].columns) == ["sex", "year"] and only[1].index[0] == 10
    pd.testing.assert_frame_equal(snapshots.empty_frame(cfg).dtypes.to_frame(),
                                  expected.dtypes.to_frame())
    code = ("import sys; from pipelines import snapshots; from pipelines.config import load_config;"
            f"f = snapshots.read_frame(load_config({str(REPO_ROOT / 'configs' / 'penguins.yaml')!r}),"
            f" {str(tmp_path / 'snap')!r}); print(len(f), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT)
    assert out.stdout.split() == ["23", "False"]


def test_a_corrupt_or_truncated_record_is_refused(adult_cfg, snapshot, tmp_path):
    import shutil

    from pipelines.errors import PipelineError

    copy = tmp_path / "snap"
    shutil.copytree(snapshot["uri"], copy)
    files = snapshots.data_files(copy)
    original = Path(files[0]).read_bytes()
    data = bytearray(original)
    data[200] ^= 0x01  # one bit of a record's payload
    Path(files[0]).write_bytes(bytes(data))
    with pytest.raises(PipelineError, match="corrupt or truncated TFRecord"):
        snapshots.read_frame(adult_cfg, copy)
    Path(files[0]).write_bytes(original[:-3])  # the last record's checksum cut short
    with pytest.raises(PipelineError, match="corrupt or truncated TFRecord"):
        for _ in snapshots.iter_frames(adult_cfg, copy):
            pass


# Every kind of SuiteStream combiner: per-row (map), schema, row count, moments, distinct sets,
# uniqueness and the whole-column fallback (median, increasing).
EXTRA = [
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "age", "min_value": 30,
                                                            "max_value": 40}},
    {"type": "expect_column_stdev_to_be_between", "kwargs": {"column": "age", "min_value": 1,
                                                             "max_value": 5}},
    {"type": "expect_column_max_to_be_between", "kwargs": {"column": "fnlwgt", "max_value": 5}},
    {"type": "expect_column_min_to_be_between", "kwargs": {"column": "age", "min_value": 0}},
    {"type": "expect_column_sum_to_be_between", "kwargs": {"column": "capital_gain",
                                                           "min_value": 0}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "fnlwgt"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "education",
                                                             "mostly": 0.0}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "education",
                                                               "regex": "^[A-Z]"}},
    {"type": "expect_column_distinct_values_to_be_in_set",
     "kwargs": {"column": "race", "value_set": ["White", "Black"]}},
    {"type": "expect_column_distinct_values_to_equal_set",
     "kwargs": {"column": "sex", "value_set": ["Female", "Male"]}},
    {"type": "expect_column_unique_value_count_to_be_between",
     "kwargs": {"column": "education", "min_value": 1, "max_value": 10}},
    {"type": "expect_column_median_to_be_between", "kwargs": {"column": "age", "min_value": 30}},
    {"type": "expect_column_values_to_be_increasing", "kwargs": {"column": "age"}},
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "sex", "min_value": 0}},
]


def test_the_chunked_suite_gives_gx_verdicts_on_all_rows(adult_cfg, snapshot):
    """SuiteStream over 7,000-row chunks equals one GX run on the whole frame, expectation by
    expectation (success, counts, percentages, unexpected values, exceptions; stdev to floating
    point rounding), on the real window and on a corrupted copy; the sample rows are the rows
    the single-frame lookup finds."""
    from pipelines.validate import (
        SuiteStream,
        exception_message,
        load_suite,
        run_suite,
        summarise_gx,
    )

    frame = snapshots.read_frame(adult_cfg, snapshot["uri"])
    bad = frame.copy()
    bad.loc[100:102, "age"] = -4
    bad.loc[bad.index % 100 == 0, "sex"] = "Unknown"
    bad.loc[20000:31000, "workclass"] = "?"
    bad.loc[6999:7001, "fnlwgt"] = 123  # duplicates across a chunk boundary
    suite = load_suite(adult_cfg)
    suite = {**suite, "expectations": suite["expectations"] + EXTRA}

    def key(r):
        kw = {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"}
        return r.expectation_config.type, json.dumps(kw, sort_keys=True)

    def doc(r):
        d = r.to_json_dict()
        d.pop("expectation_config")
        d["exception_info"] = exception_message(d["exception_info"]) is not None
        return d

    for f in (frame, bad):
        whole = run_suite(suite, f)
        stream = SuiteStream(suite, sample_rows=5)
        chunks = [f.iloc[i:i + 7000] for i in range(0, len(f), 7000)]
        for c in chunks:
            stream.add(c)
        if stream.second_pass_columns():
            for c in chunks:
                stream.add_second(c)
        got = stream.result()
        want = {key(r): doc(r) for r in whole.results}
        have = {key(r): doc(r) for r in got.results}
        assert have.keys() == want.keys() and len(have) == len(suite["expectations"])
        for k, w in want.items():
            if k[0] == "expect_column_stdev_to_be_between":
                assert have[k]["result"]["observed_value"] == pytest.approx(
                    w["result"]["observed_value"], rel=1e-12)
                assert have[k]["success"] == w["success"]
            else:
                assert have[k] == w, k
        assert got.success == whole.success and got.statistics == whole.statistics
        records, failures = summarise_gx(got, len(f), stream.samples)
        for r, rec in zip(got.results, records, strict=True):
            col = rec["kwargs"].get("column")
            shown = (r.result or {}).get("partial_unexpected_list")
            if not r.success and shown and col in f.columns:
                old = f[f[col].isin(shown)].head(5)
                assert rec["sample_rows"] == json.loads(old.to_json(orient="records")), rec["type"]
    assert "column age: 3 values outside [17, 90] (e.g. -4)" in failures
    assert any(x.startswith("column sex: 326 values (1.0%) not among") for x in failures)
    assert any(x.startswith("expect_column_mean_to_be_between on sex could not run")
               for x in failures)
