"""Ingest for any tabular use case: missing values, BOM, classes, multiclass and regression splits.

Small real files written by the test through the real Beam ingest; the configs are built in the
test from the same model a configs/*.yaml file is checked by.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from pipelines.config import parse_config
from pipelines.context import RunContext
from pipelines.ingest import ingest
from pipelines.snapshots import read_frame

pytestmark = pytest.mark.slow
SPAN = dt.date(2026, 3, 1)
CTX = RunContext(run_id="pytest-ingest-tasks", triggered_by="test")


def make_cfg(label: dict, columns: list[dict], name: str = "tiny", **extra):
    return parse_config({
        "name": name,
        "source": {"uri_pattern": "{landing}/" + name + "/{span}/*.csv", "missing_marker": "NA"},
        "columns": columns,
        "label": label,
        "validation": {"expectations": "expectations/none.json"},
        "transform_module": "transforms.none",
        **extra,
    })


def land(home, name: str, header: list[str], rows: list[list], bom: bool = False) -> None:
    folder = home / "landing" / name / SPAN.isoformat()
    folder.mkdir(parents=True)
    text = "\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n"
    (folder / "part-0.csv").write_bytes(("\ufeff" if bom else "").encode() + text.encode())


def malformed(res) -> list[dict]:
    path = res["uri"] + "/malformed.jsonl"
    return [json.loads(line) for line in open(path) if line.strip()]


def test_missing_values_in_nullable_columns_are_carried_as_missing(tmp_path):
    cfg = make_cfg({"column": "y", "task": "binary", "classes": [0, 1], "positive_class": 1},
                   [{"name": "x", "type": "float", "nullable": True},
                    {"name": "k", "type": "int", "nullable": True},
                    {"name": "s", "type": "string", "nullable": True},
                    {"name": "y", "type": "int"}])
    rows = [[i / 10, i, f"c{i % 3}", i % 2] for i in range(40)]
    rows[3][0] = ""          # empty cell
    rows[5][1] = "NA"        # the configured marker
    rows[7][2] = ""
    land(tmp_path, "tiny", ["x", "k", "s", "y"], rows, bom=True)
    res = ingest(cfg, tmp_path, CTX, span=SPAN)
    assert res["malformed_rows"] == 0 and res["rows"]["total"] == 40
    frame = read_frame(cfg, res["uri"])
    assert frame["x"].isna().sum() == 1 and frame["k"].isna().sum() == 1
    assert frame["s"].isna().sum() == 1
    assert sorted(frame["k"].dropna().astype(int)) == sorted(set(range(40)) - {5})
    balance = res["label_balance"]
    assert balance["train"]["positive"] + balance["eval"]["positive"] == 20


def test_missing_number_in_a_column_that_is_not_nullable_says_how_to_fix(tmp_path):
    cfg = make_cfg({"column": "y", "task": "binary", "classes": ["a", "b"], "positive_class": "b"},
                   [{"name": "x", "type": "int"}, {"name": "y", "type": "string"}])
    land(tmp_path, "tiny", ["x", "y"], [[1, "a"], ["", "b"], [3, "b"]])
    res = ingest(cfg, tmp_path, CTX, span=SPAN)
    bad = malformed(res)
    assert res["malformed_rows"] == 1 and bad[0]["line"] == 3
    assert "column x" in bad[0]["reason"] and "nullable: true" in bad[0]["reason"]


def test_labels_outside_the_classes_are_refused_by_name(tmp_path):
    cfg = make_cfg({"column": "y", "task": "multiclass", "classes": [0, 1, 2]},
                   [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}])
    land(tmp_path, "tiny", ["x", "y"], [[1, 0], [2, 1], [3, 2], [4, 7], [5, 1]])
    res = ingest(cfg, tmp_path, CTX, span=SPAN)
    bad = malformed(res)
    assert res["malformed_rows"] == 1
    assert "'7'" in bad[0]["reason"] and "[0, 1, 2]" in bad[0]["reason"]


def test_multiclass_split_keeps_every_class_rate(tmp_path):
    cfg = make_cfg({"column": "y", "task": "multiclass", "classes": ["a", "b", "c"]},
                   [{"name": "x", "type": "int"}, {"name": "y", "type": "string"}],
                   split={"eval_fraction": 0.25, "salt": "t"})
    rng = random.Random(0)
    counts = {"a": 600, "b": 300, "c": 100}
    rows = [[rng.randrange(10**6), c] for c, n in counts.items() for _ in range(n)]
    rng.shuffle(rows)
    land(tmp_path, "tiny", ["x", "y"], rows)
    res = ingest(cfg, tmp_path, CTX, span=SPAN)
    ev, tr = res["label_balance"]["eval"]["counts"], res["label_balance"]["train"]["counts"]
    for c, n in counts.items():
        assert ev[c] == round(0.25 * n) and ev[c] + tr[c] == n
    assert "positive" not in res["label_balance"]["eval"]


def test_regression_split_is_stratified_by_target_quantile(tmp_path):
    cfg = make_cfg({"column": "y", "task": "regression"},
                   [{"name": "x", "type": "int"}, {"name": "y", "type": "float"}],
                   split={"eval_fraction": 0.2, "salt": "t", "quantiles": 5})
    rng = random.Random(1)
    rows = [[i, round(rng.lognormvariate(0, 1), 4)] for i in range(1000)]
    land(tmp_path, "tiny", ["x", "y"], rows)
    res = ingest(cfg, tmp_path, CTX, span=SPAN)
    ev = res["label_balance"]["eval"]["counts"]
    assert sorted(ev) == ["q00", "q01", "q02", "q03", "q04"]
    assert all(38 <= n <= 42 for n in ev.values()), ev  # 20% of each fifth of the target
    frame = read_frame(cfg, res["uri"], "eval")
    whole = sorted(r[1] for r in rows)
    assert abs(frame["y"].median() - whole[500]) < 0.25 * whole[500]
