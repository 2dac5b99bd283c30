"""The new use cases' transforms on real rows (copied from their sample files) under tft_beam:
per-task label encoding, nullable columns (SparseTensor in, dense out, missing handled), only
the config's feature columns read, every output named ``*_xf``."""

from __future__ import annotations

import csv
import importlib
import io

import numpy as np
import pytest

from pipelines.config import REPO_ROOT, load_config
from pipelines.snapshots import raw_feature_spec

pytestmark = pytest.mark.slow

# Real rows of each sample file (docs/data/<name>.md), as staged: empty cell = missing value.
ROWS = {
    "compas": """id,sex,age,race,juv_fel_count,juv_misd_count,juv_other_count,priors_count,days_b_screening_arrest,c_charge_degree,c_charge_desc,decile_score,score_text,two_year_recid
1,Male,69,Other,0,0,0,0,-1,F,Aggravated Assault w/Firearm,1,Low,0
3,Male,34,African-American,0,0,0,0,-1,F,Felony Battery w/Prior Convict,3,Low,1
4,Male,24,African-American,0,0,1,4,-1,F,Possession of Cocaine,4,Low,1
5,Male,23,African-American,0,1,0,1,,F,Possession of Cannabis,8,High,0
6,Male,43,Other,0,0,0,2,,F,arrest case no charge,1,Low,0
199,Male,28,Caucasian,0,0,0,2,,F,arrest case no charge,1,Low,0
243,Male,39,Caucasian,1,0,0,1,-1,M,,4,Low,0
""",
    "penguins": """species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year
Adelie,Torgersen,39.1,18.7,181,3750,male,2007
Adelie,Torgersen,39.5,17.4,186,3800,female,2007
Adelie,Torgersen,,,,,,2007
Adelie,Torgersen,34.1,18.1,193,3475,,2007
Chinstrap,Dream,46.5,17.9,192,3500,female,2007
Gentoo,Biscoe,46.1,13.2,211,4500,female,2007
""",
    "seattle_weather": """date,precipitation,temp_max,temp_min,wind,weather
2012/01/17,8.1,3.3,0.0,5.6,snow
2012/01/28,0.0,6.7,0.6,2.2,rain
2012/02/10,2.5,12.8,6.7,3.0,rain
2012/02/27,0.0,6.7,-2.2,3.0,sun
2012/07/15,0.0,29.4,15.0,2.5,sun
2012/12/31,0.0,3.3,-2.8,2.0,sun
""",
}


def instances(cfg, text: str) -> list[dict]:
    """CSV rows as tft_beam instance dicts: nullable columns are lists (empty when missing)."""
    cast = {"int": int, "float": float, "string": str}
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        inst = {}
        for c in cfg.columns:
            v = row[c.name]
            if c.nullable:
                inst[c.name] = [cast[c.type](v)] if v != "" else []
            else:
                inst[c.name] = cast[c.type](v)
        out.append(inst)
    return out


def run(cfg, rows, temp_dir):
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    fn = importlib.import_module(cfg.transform_module).make_preprocessing_fn(cfg)
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(raw_feature_spec(cfg)))
    with tft_beam.Context(temp_dir=str(temp_dir), force_tf_compat_v1=False):
        (out, out_meta), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False)
    return out, out_meta


@pytest.mark.parametrize("name", sorted(ROWS))
def test_transform_on_real_rows(name, tmp_path):
    cfg = load_config(REPO_ROOT / "configs" / f"{name}.yaml")
    rows = instances(cfg, ROWS[name])
    out, out_meta = run(cfg, rows, tmp_path)
    assert len(out) == len(rows)
    names = set(out[0])
    assert all(n.endswith("_xf") for n in names)
    label = f"{cfg.label.column}_xf"
    labels = [r[label] for r in out]
    raw = [r[cfg.label.column] for r in rows]
    if cfg.task == "binary":
        assert labels == [int(v == cfg.label.positive_class) for v in raw]
    elif cfg.task == "multiclass":
        assert labels == [cfg.label.classes.index(v) for v in raw]
    else:
        assert np.allclose(labels, raw, atol=1e-5)
    for r in out:  # dense scalars everywhere, no NaN from a missing value
        for k, v in r.items():
            assert np.ndim(v) == 0, k
            assert np.isfinite(float(v)), (k, v)
    # Excluded columns are not read: their values do not change any feature.
    excluded = [c.name for c in cfg.columns if c.role == "excluded"]
    if excluded:
        changed = [dict(r) for r in rows]
        for r in changed:
            for c in excluded:
                col = cfg.column(c)
                r[c] = {"int": 1, "float": 1.0, "string": "zzz"}[col.type]
        out2, _ = run(cfg, changed, tmp_path / "changed")
        for a, b in zip(out, out2, strict=True):
            assert {k: float(v) for k, v in a.items()} == {k: float(v) for k, v in b.items()}


def test_penguins_missing_values_are_handled():
    """The unmeasured bird: z-scores 0 (the mean), the indicator 1, sex its reserved id 0."""
    cfg = load_config(REPO_ROOT / "configs" / "penguins.yaml")
    rows = instances(cfg, ROWS["penguins"])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out, _ = run(cfg, rows, tmp)
    unmeasured, unsexed = out[2], out[3]
    for c in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        assert unmeasured[f"{c}_xf"] == 0.0
    assert unmeasured["measurements_missing_xf"] == 1.0
    assert out[0]["measurements_missing_xf"] == 0.0
    assert unmeasured["sex_xf"] == unsexed["sex_xf"] == 0  # MISSING_TOKEN, reserved first
    assert out[0]["sex_xf"] != 0


def test_seattle_season_wraps_around_the_year():
    import tensorflow as tf

    from transforms.seattle_weather import season

    parts = season(tf.constant(["2012/12/31", "2013/01/01", "2012/07/01"]))
    sin, cos = parts["sin"].numpy(), parts["cos"].numpy()
    assert abs(sin[0] - sin[1]) < 0.05 and abs(cos[0] - cos[1]) < 0.01  # neighbours on the circle
    assert cos[2] < -0.99  # mid-year is opposite
    assert parts["month"].numpy().tolist() == [11, 0, 6]
