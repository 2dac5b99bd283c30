"""The shadow policy's rules on hand-made values (pure: no TensorFlow, no registry).

pipelines/shadow.py: which monitored spans count for a pending shadow (:func:`tally`), and the
decision on them (:func:`judge`); and the config's checks of ``promotion.shadow_margins``.
"""

from __future__ import annotations

import copy

import pytest

from pipelines import shadow
from pipelines.config import ConfigError, parse_config
from tests.eval.conftest import adult_raw, task_config


def cfg_with(**promotion):
    raw = copy.deepcopy(adult_raw())
    raw["promotion"] = {**raw["promotion"], "policy": "shadow", **promotion}
    return parse_config(raw, "<adult shadow>")


def row(name, prod, shadow_, n=1000, why=None):
    """A live TFMA row with both models' metrics (shadow = candidate, production = baseline)."""
    features = {} if name == "overall" else dict(p.split("=") for p in name.split(", "))
    return {"dataset": "live", "slice": features, "name": name,
            "candidate": {"example_count": n, **shadow_}, "baseline": {"example_count": n, **prod},
            "undefined": why or {}}


def comparisons(cfg, rows):
    return shadow.compare(cfg, rows, "candidate", "baseline")


def span(name, cfg, rows):
    return {"span": name, "monitoring_uri": f"/m/{name}", "comparisons": comparisons(cfg, rows)}


# ---------------------------------------------------------------- config


def test_config_accepts_shadow_and_checks_the_margins():
    cfg = cfg_with(shadow_margins={"auc": 0.005, "slice_fnr": 0.02})
    assert cfg.promotion.policy == "shadow"
    assert shadow.margins(cfg) == [("auc", "auc", "overall", 0.005),
                                   ("slice_fnr", "fnr", "slice", 0.02)]
    with pytest.raises(ConfigError) as err:
        cfg_with(shadow_margins={"rmse": 0.1, "slice_auc": -0.01})
    text = str(err.value)
    assert "promotion.shadow_margins.rmse: not a live metric the monitor compares for task " \
           "binary (accepted: auc," in text
    assert "promotion.shadow_margins.slice_auc: -0.01 is negative" in text
    with pytest.raises(ConfigError, match="policy shadow needs at least one metric"):
        cfg_with(shadow_margins={})


def test_margins_of_other_tasks_are_their_metrics():
    reg = task_config("regression")  # adult's {auc: 0.005} is inert under policy auto
    assert reg.promotion.shadow_margins == {"auc": 0.005}
    raw = copy.deepcopy(adult_raw())
    raw["label"] = {"column": "hours_per_week", "task": "regression"}
    raw["evaluation"].update(thresholds={}, fairness=None, override_bounds={})
    raw.pop("monitoring")
    raw["promotion"]["policy"] = "shadow"
    with pytest.raises(ConfigError, match=r"shadow_margins.auc: not a live metric the monitor "
                       r"compares for task regression \(accepted: mae, rmse, r2, slice_mae"):
        parse_config(raw)
    raw = copy.deepcopy(adult_raw())
    raw["label"] = {"column": "hours_per_week", "task": "regression"}
    raw["evaluation"].update(thresholds={}, fairness=None, override_bounds={})
    raw.pop("monitoring")
    raw["promotion"].update(policy="shadow", shadow_margins={"rmse": 0.5, "slice_r2": 0.05})
    assert parse_config(raw).promotion.shadow_margins == {"rmse": 0.5, "slice_r2": 0.05}


# ---------------------------------------------------------------- compare


def test_compare_keeps_both_values_and_why_undefined():
    cfg = cfg_with(shadow_margins={"auc": 0.005, "slice_auc": 0.02})
    rows = [row("overall", {"auc": 0.90}, {"auc": 0.91}, n=4500),
            row("sex=Female", {"auc": 0.93}, {"auc": None}, n=1500,
                why={"candidate": {"auc": "one label class only"}})]
    got = comparisons(cfg, rows)
    assert [(c["key"], c["slice"], c["production"], c["shadow"], c["examples"]) for c in got] == [
        ("auc", "overall", 0.90, 0.91, 4500), ("slice_auc", "sex=Female", 0.93, None, 1500)]
    assert got[1]["why_undefined"] == {"production": None, "shadow": "one label class only"}


# ---------------------------------------------------------------- tally


def record(span_, version, created, rows_cfg=None, rows=None, production=1, excluded=None):
    sh = {"version": version, "excluded": excluded}
    if rows is not None:
        sh["comparisons"] = comparisons(rows_cfg, rows)
        sh["agreement_rate"] = 0.97
    return {"span": span_, "created_at": created, "_uri": f"/m/{span_}-{created}",
            "production": {"version": production}, "shadow": sh}


def test_tally_counts_each_span_once_and_says_why_not():
    cfg = cfg_with(shadow_spans=2)
    good = [row("overall", {"auc": 0.90}, {"auc": 0.90})]
    undefined = [row("overall", {"auc": None}, {"auc": None},
                     why={"baseline": {"auc": "one label class only"}})]
    pending = {"version": 3, "baseline": 1, "since": "2026-11-21T00:00:00Z"}
    recs = [
        record("2026-11-20", 3, "2026-11-20T10:00:00Z", cfg, good),  # before the shadow was set
        record("2026-11-21", 2, "2026-11-21T10:00:00Z", cfg, good),  # an older shadow
        record("2026-11-21", 3, "2026-11-21T11:00:00Z", cfg, good, excluded="the shadow trained "
               "on span 2026-11-21: not counted for the shadow decision"),
        record("2026-11-22", 3, "2026-11-22T10:00:00Z", cfg, good),
        record("2026-11-22", 3, "2026-11-22T12:00:00Z", cfg, good),  # the same span again
        record("2026-11-23", 3, "2026-11-23T10:00:00Z", cfg, undefined),
        record("2026-11-24", 3, "2026-11-24T10:00:00Z", cfg, good, production=2),  # rolled back
        record("2026-11-25", 3, "2026-11-25T10:00:00Z", cfg, None),
    ]
    t = shadow.tally(cfg, pending, recs)
    assert [s["span"] for s in t["counted"]] == ["2026-11-22"]
    assert t["counted"][0]["monitoring_uri"] == "/m/2026-11-22-2026-11-22T12:00:00Z"  # newest
    why = {n["span"]: n["why"] for n in t["not_counted"]}
    assert set(why) == {"2026-11-21", "2026-11-23", "2026-11-25"}
    assert "the shadow trained on span" in why["2026-11-21"]
    assert "production's live auc is undefined (one label class only): the decision waits" \
           in why["2026-11-23"]
    assert "no live metrics" in why["2026-11-25"]
    assert t["needed"] == 2


# ---------------------------------------------------------------- judge


def test_no_worse_within_the_margin_promotes():
    cfg = cfg_with(shadow_margins={"auc": 0.005})
    spans = [span("d1", cfg, [row("overall", {"auc": 0.905}, {"auc": 0.901})]),
             span("d2", cfg, [row("overall", {"auc": 0.900}, {"auc": 0.899})])]
    d = shadow.judge(cfg, spans)
    assert d["decision"] == "promote" and d["reasons"] == []
    (delta,) = d["deltas"]
    assert delta["worse_by"] == pytest.approx(0.0025) and delta["passed"]
    assert d["spans_judged"] == ["d1", "d2"]


def test_worse_beyond_the_margin_drops_naming_metric_and_slice():
    cfg = cfg_with(shadow_margins={"auc": 0.005, "slice_auc": 0.02})
    rows = [row("overall", {"auc": 0.905}, {"auc": 0.903}, n=4500),
            row("sex=Female", {"auc": 0.93}, {"auc": 0.88}, n=1500),
            row("sex=Male", {"auc": 0.89}, {"auc": 0.89}, n=3000)]
    d = shadow.judge(cfg, [span("d1", cfg, rows), span("d2", cfg, rows)])
    assert d["decision"] == "drop"
    assert d["reasons"] == ["live auc on sex=Female: shadow 0.8800 vs production 0.9300 over 2 "
                            "span(s) (3000 examples): worse by 0.0500 > margin 0.02"]


def test_a_delta_equal_to_the_margin_is_within_it():
    cfg = cfg_with(shadow_margins={"auc": 0.01})
    d = shadow.judge(cfg, [span("d1", cfg, [row("overall", {"auc": 0.91}, {"auc": 0.90})])])
    assert d["decision"] == "promote"


def test_lower_is_better_metrics_are_judged_the_other_way():
    cfg = cfg_with(shadow_margins={"fnr": 0.01})
    better = shadow.judge(cfg, [span("d", cfg, [row("overall", {"fnr": 0.40}, {"fnr": 0.30})])])
    worse = shadow.judge(cfg, [span("d", cfg, [row("overall", {"fnr": 0.30}, {"fnr": 0.40})])])
    assert better["decision"] == "promote"
    assert worse["decision"] == "drop" and "worse by 0.1000 > margin 0.01" in worse["reasons"][0]


def test_pooling_weights_each_span_by_its_examples():
    cfg = cfg_with(shadow_margins={"auc": 0.01})
    spans = [span("big", cfg, [row("overall", {"auc": 0.90}, {"auc": 0.90}, n=9000)]),
             span("small", cfg, [row("overall", {"auc": 0.90}, {"auc": 0.80}, n=1000)])]
    d = shadow.judge(cfg, spans)  # pooled: 0.90 vs 0.89, worse by exactly 0.01
    assert d["deltas"][0]["shadow"] == pytest.approx(0.89) and d["decision"] == "promote"


def test_an_undefined_shadow_metric_never_counts_as_no_worse():
    cfg = cfg_with(shadow_margins={"auc": 0.005, "slice_auc": 0.02})
    rows = [row("overall", {"auc": 0.90}, {"auc": 0.91}),
            row("race=Other", {"auc": 0.85}, {"auc": None}, n=300,
                why={"candidate": {"auc": "NaN scores"}})]
    d = shadow.judge(cfg, [span("d1", cfg, rows)])
    assert d["decision"] == "drop"
    assert d["reasons"] == ["live auc on race=Other: the shadow's is undefined on span d1 (NaN "
                            "scores) where production's is 0.8500; undefined never counts as no "
                            "worse"]


def test_slices_that_cannot_be_compared_are_listed_and_a_margin_with_none_drops():
    cfg = cfg_with(shadow_margins={"auc": 0.005, "slice_auc": 0.02})
    rows = [row("overall", {"auc": 0.90}, {"auc": 0.90}),
            row("race=Other", {"auc": None}, {"auc": None}, n=300),  # one label class in both
            row("age_bucket=65+", {"auc": 0.80}, {"auc": 0.60}, n=150)]  # too small to judge
    d = shadow.judge(cfg, [span("d1", cfg, rows)])
    assert {(n["slice"], n["why"]) for n in d["not_compared"]} == {
        ("race=Other", "undefined for production on every span"),
        ("age_bucket=65+", "150 examples < evaluation.min_slice_size 200")}
    assert d["decision"] == "drop"
    assert d["reasons"][0].startswith("slice_auc: no slice could be compared on the judged spans")
    cfg_overall = cfg_with(shadow_margins={"auc": 0.005})  # no slice margin: nothing is required
    assert shadow.judge(cfg_overall, [span("d1", cfg_overall, rows)])["decision"] == "promote"


def test_message_says_the_decision_and_why():
    cfg = cfg_with(shadow_margins={"auc": 0.005})
    d = shadow.judge(cfg, [span("d1", cfg, [row("overall", {"auc": 0.90}, {"auc": 0.85})])])
    text = shadow.message(cfg, {**d, "shadow_version": 4, "production_version": 2})
    assert text.startswith("adult: shadow version 4 DROPPED after spans d1; production stays 2: "
                           "live auc on overall: shadow 0.8500 vs production 0.9000")
