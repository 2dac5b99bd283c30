"""The CLI's shared parsers and the newest-artifact finder, as a command line user meets them."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from pipelines import store
from pipelines.cli.options import parse_overrides, parse_span
from pipelines.dates import parse_date
from pipelines.errors import EXIT_USAGE, UsageError


def test_overrides_are_a_dict_of_floats_the_last_one_winning():
    assert parse_overrides(None) == {}
    assert parse_overrides(["slice_auc_min=0.8", " overall_auc_min = 0.9", "slice_auc_min=1"]) == {
        "slice_auc_min": 1.0, "overall_auc_min": 0.9}


@pytest.mark.parametrize("item", ["slice_auc_min", "=0.8", "slice_auc_min=", "a=high", "a=nan",
                                  "a=inf"])
def test_a_malformed_override_is_a_usage_error_naming_it(item):
    with pytest.raises(UsageError, match="expected NAME=NUMBER") as err:
        parse_overrides(["overall_auc_min=0.9", item])
    assert repr(item) in str(err.value) and err.value.exit_code == EXIT_USAGE


def test_dates_are_yyyy_mm_dd_only():
    assert parse_date("2026-11-20") == dt.date(2026, 11, 20)
    assert parse_date(dt.datetime(2026, 11, 20, 7, 30)) == dt.date(2026, 11, 20)
    assert parse_date(None) is None and parse_date("") is None  # an empty Airflow param
    for bad in ("20261120", "2026-11-31", "20-11-2026", "2026-W47-5"):
        with pytest.raises(UsageError, match=f"--span {bad!r} is not a date in YYYY-MM-DD form"):
            parse_date(bad, "--span")
    assert parse_span(None) is None
    with pytest.raises(UsageError, match="--span '' is not a date"):
        parse_span("")  # given on the command line, but empty


def test_newest_is_the_latest_complete_artifact_never_a_hidden_one(tmp_path):
    assert store.newest(tmp_path, "models", "adult", "model.json") is None
    root = tmp_path / "models" / "adult"
    for i, name in enumerate(["old", "new", ".tmp-new2-ab12", ".new.replaced-2026", "partial"]):
        (root / name).mkdir(parents=True)
        if name != "partial":
            marker = root / name / "model.json"
            marker.write_text("{}")
            os.utime(marker, ns=(10**18 + i, 10**18 + i))
    assert store.newest(tmp_path, "models", "adult", "model.json") == root / "new"
    assert store.newest(tmp_path, "models", "other", "model.json") is None
    assert store.KINDS["models"] == "model.json"
