"""Splitting: deterministic, disjoint, and stratified by label on the real Adult rows."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from pipelines.csv_parse import RowParser
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def rows():
    with open(SHARED_DATA / "adult_train.csv") as f:
        return list(csv.DictReader(f))


def test_row_hash_is_stable_and_salted(adult_cfg, rows):
    parser = RowParser.from_config(adult_cfg)
    first = [parser.row_hash(r) for r in rows[:500]]
    assert first == [RowParser.from_config(adult_cfg).row_hash(r) for r in rows[:500]]
    assert all(0 <= h < 1 for h in first)
    other = RowParser.from_config(adult_cfg.model_copy(
        update={"split": adult_cfg.split.model_copy(update={"salt": "other"})}))
    assert [other.row_hash(r) for r in rows[:500]] != first


@pytest.mark.slow
def test_snapshot_splits_are_disjoint_stratified_and_stable(adult_cfg, snapshot, pipeline_home, ctx):
    from pipelines.snapshots import read_frame

    train = read_frame(adult_cfg, snapshot["uri"], "train")
    evals = read_frame(adult_cfg, snapshot["uri"], "eval")
    whole = (len(train) + len(evals))
    assert whole == 32561
    assert abs(len(evals) / whole - adult_cfg.split.eval_fraction) < 0.005
    rate = 7841 / 32561
    for part in (train, evals):
        assert abs((part["income"] == ">50K").mean() - rate) < 0.01
    key = lambda df: Counter(map(tuple, df.astype(str).values.tolist()))  # noqa: E731
    # Adult has duplicate rows; identical rows hash alike, so they always share a split.
    assert not set(key(train)) & set(key(evals))


def _reference_plan(rows, fraction, quantiles):
    """The split plan as ingest computed it before issue 11 (every row's hash held in a sorted
    list per stratum): what SplitPlan must still produce."""
    import bisect

    edges = None
    if quantiles:
        targets = sorted(float(label) for label, _ in rows)
        edges = sorted({targets[len(targets) * i // quantiles] for i in range(1, quantiles)})
    strata: dict[str, list[float]] = {}
    for label, h in rows:
        key = str(label) if edges is None else f"q{bisect.bisect_right(edges, float(label)):02d}"
        strata.setdefault(key, []).append(h)
    cutoffs = {}
    for key, hashes in strata.items():
        hashes.sort()
        k = round(fraction * len(hashes))
        cutoffs[key] = hashes[k - 1] if k else -1.0
    return {"edges": edges, "cutoffs": cutoffs}


@pytest.mark.parametrize("quantiles", [None, 5])
def test_split_plan_keeps_counts_not_rows_and_matches_the_sorted_lists(quantiles):
    """The plan holds 8 bytes per row (issue 11 item 5) and gives the very cutoffs and quantile
    edges of the old per-stratum sorted lists, whatever the order and merging of its parts."""
    import random
    from array import array

    from pipelines.ingest import SplitPlan

    rng = random.Random(7)
    rows = [((round(rng.lognormvariate(0, 1), 3) if quantiles else rng.choice("abc")),
             rng.random()) for _ in range(5000)]
    rows += [("c" if not quantiles else 1.0, 0.5)] * 3  # duplicate rows hash alike
    plan = SplitPlan(0.2, quantiles)
    parts = []
    for start in range(0, len(rows), 1300):  # bundles, merged in another order than added
        acc = plan.create_accumulator()
        for row in rows[start:start + 1300]:
            acc = plan.add_input(acc, row)
        parts.append(acc)
    merged = plan.merge_accumulators(reversed(parts))
    got = plan.extract_output(merged)
    assert got == _reference_plan(rows, 0.2, quantiles)
    # flat arrays of doubles, one per row and stratum (regression: target and hash), no rows
    assert all(isinstance(v, array) and v.typecode == "d" for v in merged.values())
    assert sum(len(v) for v in merged.values()) == len(rows) * (2 if quantiles else 1)
    assert SplitPlan(0.2, quantiles).extract_output(SplitPlan(0.2, quantiles).create_accumulator()) \
        == {"edges": [] if quantiles else None, "cutoffs": {}}


def test_a_stratum_smaller_than_one_eval_row_sends_none_to_eval():
    from pipelines.ingest import SplitPlan

    plan = SplitPlan(0.2, None)
    acc = plan.add_input(plan.create_accumulator(), ("rare", 0.01))
    assert plan.extract_output(acc)["cutoffs"] == {"rare": -1.0}
