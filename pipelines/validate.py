"""Step 2, validate: the data-contract gate between ingest and everything downstream.

Called through ``runner.run_step("validate", ...)`` by the CLI, ``pipelines run`` and the DAG.
A snapshot passes only if ingest parsed every source row, the Great Expectations suite
(``cfg.validation.expectations``, the data contract) holds on all of its rows, and no feature
drifted beyond its limit against the previous accepted snapshot (pipelines/drift.py). The verdict
is written atomically beside the snapshot (``<snapshot>.validation/result.json`` plus the GX Data
Docs page ``data_docs.html`` and the snapshot's drift profile); its ``status`` marks the snapshot
accepted or rejected, and a rejected snapshot is kept, never deleted. A rejection raises
``DataRejected`` with one line per problem. GX runs in an ephemeral context.

Memory does not grow with rows: the snapshot is read chunk by chunk (snapshots.iter_frames,
50k rows, no TensorFlow), GX validates each chunk and :class:`SuiteStream` combines the results
into the verdict GX gives on all rows at once (how, per expectation type: its docstring);
duplicates are counted from a 64-bit hash per row and drift from streaming histograms and counts
(drift.Profiler, drift.Comparer).
"""

from __future__ import annotations

import copy
import html
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from pipelines import snapshots
from pipelines.config import REPO_ROOT, PipelineConfig
from pipelines.context import RunContext, utcnow
from pipelines.errors import DataRejected, PipelineError
from pipelines.hashing import sha256_file, sha256_json, sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.store import publish, read_json, write_json_atomic

log = logging.getLogger(__name__)
MALFORMED_SHOWN = 5  # malformed rows quoted in the rejection message
PROFILE = "drift_profile.json"  # histograms and frequencies a later snapshot is compared with


def suite_path(cfg: PipelineConfig) -> Path:
    return REPO_ROOT / cfg.validation.expectations  # an absolute path stays absolute


def load_suite(cfg: PipelineConfig) -> dict[str, Any]:
    path = suite_path(cfg)
    if not path.is_file():
        raise PipelineError(f"validation.expectations: suite {path} not found; fix the path in "
                            f"the config of pipeline {cfg.name!r}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc}); the suite must be a GX "
                            "ExpectationSuite saved as JSON") from exc


def contract_sha256(cfg: PipelineConfig) -> str:
    """What a stored verdict depends on besides the data: the suite and the drift settings."""
    return sha256_json({"suite": load_suite(cfg), "drift": cfg.validation.drift.model_dump(),
                        "columns": [c.model_dump() for c in cfg.columns],
                        "max_duplicate_fraction": cfg.validation.max_duplicate_fraction})


PARTIAL = 5  # unexpected values GX reports per expectation (partial_unexpected_list)
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": PARTIAL}
# BASIC, not SUMMARY: SUMMARY also computes the unexpected row indices, which in GX's pandas
# engine copies the whole frame once per column expectation (measured: 8.3 s -> 4.6 s on 651k
# rows); sample offending rows are looked up by value instead (SuiteStream.samples).


def _gx_batches():
    """An ephemeral GX context's batch definition over one in-memory pandas frame."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO is per-metric
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(), analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False)))
    asset = context.data_sources.add_pandas("snapshot").add_dataframe_asset("rows")
    return asset.add_batch_definition_whole_dataframe("all")


def _gx_suite(suite_json: dict[str, Any]):
    from great_expectations.core import ExpectationSuite

    suite = ExpectationSuite(**suite_json)
    if len(suite.expectations) != len(suite_json.get("expectations", [])):
        raise PipelineError("the expectation suite holds invalid expectations (see the GX log "
                            "above); fix the suite JSON")
    return suite


def run_suite(suite_json: dict[str, Any], frame) -> Any:
    """Runs the whole suite once on one pandas DataFrame; returns the GX suite validation result
    (validate itself streams the snapshot through :class:`SuiteStream`)."""
    suite = _gx_suite(suite_json)
    batch = _gx_batches().get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(suite, result_format=RESULT_FORMAT)


# How each expectation type of a suite is evaluated when the rows come in chunks (SuiteStream).
SCHEMA = frozenset({  # the same on every chunk (the columns and their types are the snapshot's)
    "expect_table_columns_to_match_ordered_list", "expect_table_columns_to_match_set",
    "expect_table_column_count_to_equal", "expect_table_column_count_to_be_between",
    "expect_column_to_exist"})
ROW_COUNT = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"})
MOMENTS = {  # column aggregates combined from per-chunk partial sums, judged by GX's _validate
    "expect_column_mean_to_be_between": "column.mean",
    "expect_column_stdev_to_be_between": "column.standard_deviation",
    "expect_column_sum_to_be_between": "column.sum",
    "expect_column_min_to_be_between": "column.min",
    "expect_column_max_to_be_between": "column.max"}
DISTINCT = frozenset({  # depend only on the column's set of distinct values: GX runs once more
    "expect_column_distinct_values_to_contain_set",  # on a frame of those values
    "expect_column_distinct_values_to_be_in_set", "expect_column_distinct_values_to_equal_set",
    "expect_column_unique_value_count_to_be_between"})
UNIQUE = frozenset({"expect_column_values_to_be_unique"})  # 64-bit value hashes across chunks
CROSS_ROW = frozenset({  # map expectations that compare rows with other rows: not per chunk
    "expect_column_values_to_be_increasing", "expect_column_values_to_be_decreasing",
    "expect_compound_columns_to_be_unique", "expect_multicolumn_values_to_be_unique"})


def _kind(expectation) -> str:
    """``map`` (per row: GX per chunk, counts summed), ``schema``, ``rows``, ``moment``,
    ``distinct``, ``unique``, or ``whole`` (no combiner: GX on the expectation's columns kept in
    memory for the whole snapshot)."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    kind = expectation.expectation_type
    conditional = getattr(expectation, "row_condition", None) is not None
    if kind in SCHEMA:
        return "schema"
    if kind in UNIQUE and not conditional:
        return "unique"
    if kind in CROSS_ROW or kind in UNIQUE:
        return "whole"
    if isinstance(expectation, ColumnMapExpectation | ColumnPairMapExpectation |
                  MulticolumnMapExpectation):
        return "map"
    if conditional:
        return "whole"
    if kind in ROW_COUNT:
        return "rows"
    if kind in MOMENTS:
        return "moment"
    if kind in DISTINCT:
        return "distinct"
    return "whole"


def _columns(kwargs: dict[str, Any]) -> list[str]:
    """The columns an expectation reads (an empty list: the whole table)."""
    cols = [kwargs[k] for k in ("column", "column_A", "column_B") if kwargs.get(k)]
    return cols + list(kwargs.get("column_list") or [])


class _Moments:
    """count, sum, mean, M2 (Chan et al.'s parallel update), min, max of a column's values."""

    def __init__(self) -> None:
        self.n, self.sum, self.mean, self.m2 = 0, 0, 0.0, 0.0
        self.min: Any = None
        self.max: Any = None

    def add(self, values) -> None:
        values = values.dropna()
        if not len(values):
            return
        as_float = values.to_numpy(dtype="float64")
        n, mean = len(as_float), float(as_float.mean())
        m2 = float(((as_float - mean) ** 2).sum())
        delta, total = mean - self.mean, self.n + n
        self.m2 += m2 + delta * delta * self.n * n / total
        self.mean += delta * n / total
        self.n = total
        self.sum = self.sum + values.sum()
        lo, hi = values.min(), values.max()
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)

    def metric(self, name: str) -> Any:
        nan = float("nan")
        return {"column.mean": self.mean if self.n else nan,
                "column.standard_deviation": (self.m2 / (self.n - 1)) ** 0.5 if self.n > 1 else nan,
                "column.sum": self.sum,
                "column.min": nan if self.min is None else self.min,
                "column.max": nan if self.max is None else self.max}[name]


def exception_message(exception_info: dict | None) -> str | None:
    """The message of a GX result's exception, or None. GX stores an expectation's own exception
    flat (``raised_exception``, ``exception_message``) and a metric's keyed by the metric's id."""
    info = exception_info or {}
    found = [info] + [v for v in info.values() if isinstance(v, dict)]
    for entry in found:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "an exception")
    return None


def _raised(evr) -> bool:
    return exception_message(evr.exception_info) is not None


def _value_hashes(values):
    """64-bit hashes of a column's values (the same value hashes alike in every chunk)."""
    import pandas as pd

    return pd.util.hash_pandas_object(values, index=False).to_numpy()


def _failed_evr(config, exc: BaseException):
    import traceback

    from great_expectations.core import ExpectationValidationResult

    return ExpectationValidationResult(success=False, expectation_config=config, exception_info={
        "raised_exception": True, "exception_message": f"{type(exc).__name__}: {exc}",
        "exception_traceback": traceback.format_exc()})


class SuiteStream:
    """A GX suite run over a snapshot chunk by chunk, with the verdicts of one run on all rows.

    :meth:`add` each chunk (a pandas frame of read_frame's columns), then :meth:`result`. The first
    chunk runs the whole suite (every expectation gets GX's result object and processed config);
    later chunks run the per-row and schema expectations only. Per expectation kind (:func:`_kind`):

    - ``map`` (a value is judged on its own: between, in set, not null, regex, type of each value):
      element, missing and unexpected counts add up and the unexpected values are the first
      :data:`PARTIAL` in row order, so success (``mostly`` included) and GX's result dict are
      computed exactly as GX does for the whole table (``_mostly_success``, ``_format_map_output``);
    - ``schema`` (table columns, column count): identical on every chunk; the first failing chunk's
      result, else the first;
    - ``rows``: the row count summed, judged by the expectation's own ``_validate``;
    - ``moment`` (mean, stdev, sum, min, max): count, sum, M2, min and max per chunk, combined
      (Chan's parallel variance), judged by ``_validate``; mean and stdev agree with pandas to
      floating point rounding, not bit for bit;
    - ``distinct`` (distinct values contain / in / equal a set, distinct count): the union of each
      chunk's distinct values, and GX runs once more on a frame of those values;
    - ``unique`` (``expect_column_values_to_be_unique``): a 64-bit hash of every non-null value
      (8 bytes a row); a value is unexpected when its hash occurs twice, every occurrence counted
      as GX does (``duplicated(keep=False)``); the example values come from a second pass;
    - ``whole`` (increasing / decreasing, compound uniqueness, a ``row_condition`` on an
      aggregate, any type not listed above): its columns are kept for the whole snapshot and GX
      runs on them at the end: memory grows with rows for those columns only (logged).

    Sample rows (the first rows holding a failed expectation's unexpected values) are picked per
    chunk for ``map``; for ``unique``, ``distinct`` and ``whole`` a second pass over the rows
    (:meth:`second_pass_columns`, :meth:`add_second`) picks them, since their unexpected values
    are known only after the last chunk.

    Memory: one chunk, the hashes of ``unique`` columns, the distinct values of ``distinct``
    columns, the columns of ``whole`` expectations, and up to ``sample_rows`` rows per expectation.
    """

    def __init__(self, suite_json: dict[str, Any], sample_rows: int):
        self.suite_json = dict(suite_json)
        self.suite_json["expectations"] = [  # ids tie each result to its expectation
            {**e, "id": e.get("id") or f"00000000-0000-0000-0000-{i:012d}"}
            for i, e in enumerate(suite_json.get("expectations", []))]
        self.suite = _gx_suite(self.suite_json)
        self.kinds = {e.id: _kind(e) for e in self.suite.expectations}
        for e in self.suite.expectations:
            if self.kinds[e.id] == "whole":
                log.warning("%s on %s has no chunked combiner: its column(s) are kept in memory "
                            "for the whole snapshot", e.expectation_type,
                            _columns(e.configuration.kwargs) or "the whole table")
        self.chunk_suite = _gx_suite({**self.suite_json, "expectations": [
            e for e in self.suite_json["expectations"]
            if self.kinds[e["id"]] in ("map", "schema")]})
        self.batches = _gx_batches()
        self.sample_rows = sample_rows
        self.rows = 0
        self.first: Any = None  # the first chunk's whole-suite result: order, configs, meta
        self.merged: dict[str, Any] = {}  # per expectation id: the combined state
        self.samples: dict[str, list[dict]] = {}
        self.moments: dict[str, _Moments] = {}
        self.distinct: dict[str, set] = {}
        self.dtypes: dict[str, Any] = {}
        self.hashes: dict[str, list] = {}
        self.kept: list[Any] = []
        self.errors: dict[str, BaseException] = {}
        self._whole: dict[str, Any] | None = None
        self._distinct: dict[str, Any] | None = None
        self.failed_first: set[str] = set()
        self.whole_columns: list[str] | None = self._whole_columns()

    def _whole_columns(self) -> list[str] | None:
        """Columns kept for ``whole`` expectations (None: none; [] stands for every column)."""
        wanted: list[str] = []
        for e in self.suite.expectations:
            if self.kinds[e.id] == "whole":
                cols = _columns(e.configuration.kwargs)
                if not cols:
                    return []
                wanted += [c for c in cols if c not in wanted]
        return wanted or None

    def _validate(self, suite, frame):
        return self.batches.get_batch(batch_parameters={"dataframe": frame}).validate(
            suite, result_format=RESULT_FORMAT)

    def add(self, frame) -> None:
        if self.first is None:
            self.first = self._validate(self.suite, frame)
            self.dtypes = dict(frame.dtypes)
            results = self.first.results
            self.failed_first = {r.expectation_config.id for r in results if _raised(r)}
        else:
            results = self._validate(self.chunk_suite, frame).results
        for r in results:
            rid = r.expectation_config.id
            if self.kinds[rid] in ("map", "schema"):
                self._merge(rid, r, frame)
        for e in self.suite.expectations:
            kind, kw = self.kinds[e.id], e.configuration.kwargs
            col = kw.get("column")
            if col not in frame.columns or e.id in self.failed_first:
                continue  # GX's own result of the first chunk says what is wrong
            if kind == "moment":
                try:
                    self.moments.setdefault(e.id, _Moments()).add(frame[col])
                except (TypeError, ValueError) as exc:  # e.g. the mean of a string column
                    self.errors.setdefault(e.id, exc)
            elif kind == "distinct":
                self.distinct.setdefault(col, set()).update(frame[col].dropna().unique().tolist())
            elif kind == "unique":
                values = frame[col].dropna()
                self.hashes.setdefault(col, []).append(_value_hashes(values))
                self.merged.setdefault(e.id, {"element": 0, "missing": 0})
                self.merged[e.id]["element"] += len(frame)
                self.merged[e.id]["missing"] += len(frame) - len(values)
        if self.whole_columns is not None:
            self.kept.append(frame[self.whole_columns or list(frame.columns)].copy())
        self.rows += len(frame)

    def _merge(self, rid: str, r, frame) -> None:
        state = self.merged.get(rid)
        res = r.result or {}
        if state is None:
            state = self.merged[rid] = {"evr": r, "element": 0, "missing": 0, "unexpected": 0,
                                        "partial": [], "map": "unexpected_count" in res}
        if _raised(state["evr"]):
            return  # the first exception stands
        if _raised(r):
            state["evr"] = r
            return
        if not state["map"] or "unexpected_count" not in res:
            if state["evr"].success and not r.success:
                state["evr"] = r  # schema: the first failing chunk's result
            state["map"] = False
            return
        state["element"] += res.get("element_count") or 0
        state["missing"] += res.get("missing_count") or 0
        state["unexpected"] += res.get("unexpected_count") or 0
        bad = res.get("partial_unexpected_list") or []
        if bad and len(state["partial"]) < PARTIAL:
            state["partial"] = (state["partial"] + list(bad))[:PARTIAL]
        col = r.expectation_config.kwargs.get("column")
        shown = self.samples.setdefault(rid, [])
        if bad and col in frame.columns and len(shown) < self.sample_rows:
            rows = frame[frame[col].isin(state["partial"])].head(self.sample_rows - len(shown))
            shown += json.loads(rows.to_json(orient="records"))

    def second_pass_columns(self) -> list[str]:
        """Columns whose example values or rows need a second pass over all columns: failed
        ``unique`` expectations (which values repeat is known only at the end) and failed
        ``whole`` ones (their sample rows: only their own columns were kept)."""
        cols = [c for c in self.hashes if self._duplicates(c)[0]]
        return list(dict.fromkeys(cols + [col for col, _ in self._late_samples().values()]))

    def _late_samples(self) -> dict[str, tuple[str, list]]:
        """Failed ``whole`` and ``distinct`` expectations with unexpected values: their sample
        rows (the rows holding those values) come from the second pass."""
        if not self.sample_rows:
            return {}
        late = {}
        for rid, r in {**self._whole_results(), **self._distinct_results()}.items():
            col = r.expectation_config.kwargs.get("column")
            bad = (r.result or {}).get("partial_unexpected_list")
            if not r.success and col and bad:
                late[rid] = (col, bad)
        return late

    def _duplicates(self, col: str) -> tuple[int, Any]:
        import numpy as np

        cached = getattr(self, "_dups", {})
        if col not in cached:
            allh = np.concatenate(self.hashes[col]) if self.hashes[col] else np.empty(0, np.uint64)
            uniq, counts = np.unique(allh, return_counts=True)
            cached[col] = (int(counts[counts > 1].sum()), uniq[counts > 1])
            self._dups = cached
        return cached[col]

    def add_second(self, frame) -> None:
        """The second pass over the rows, for :meth:`second_pass_columns` (chunk by chunk)."""
        import numpy as np

        for rid, (col, bad) in self._late_samples().items():
            shown = self.samples.setdefault(rid, [])
            if col in frame.columns and len(shown) < self.sample_rows:
                rows = frame[frame[col].isin(bad)].head(self.sample_rows - len(shown))
                shown += json.loads(rows.to_json(orient="records"))
        for e in self.suite.expectations:
            col = e.configuration.kwargs.get("column")
            if self.kinds[e.id] != "unique" or col not in frame.columns or e.id not in self.merged:
                continue
            state = self.merged[e.id]
            dups = self._duplicates(col)[1]
            values = frame[col].dropna()
            hit = values[np.isin(_value_hashes(values), dups)]
            partial = state.setdefault("partial", [])
            if len(partial) < PARTIAL:
                partial += hit.head(PARTIAL - len(partial)).tolist()
            shown = self.samples.setdefault(e.id, [])
            if len(shown) < self.sample_rows and len(hit):
                rows = frame.loc[hit.index].head(self.sample_rows - len(shown))
                shown += json.loads(rows.to_json(orient="records"))

    def result(self) -> Any:
        """The GX suite validation result over every chunk, in GX's order of the first run."""
        from great_expectations.core import ExpectationSuiteValidationResult
        from great_expectations.expectations.expectation import (
            _format_map_output,
            _mostly_success,
            parse_result_format,
        )
        from great_expectations.validator.validation_statistics import calc_validation_statistics

        if self.first is None:
            raise ValueError("SuiteStream.result before any chunk (add an empty frame)")
        distinct = self._distinct_results()
        whole = self._whole_results()
        out = []
        for first in self.first.results:
            rid, config = first.expectation_config.id, first.expectation_config
            kind = self.kinds[rid]
            if _raised(first) and kind not in ("map", "schema"):
                out.append(first)
                continue
            try:
                if rid in self.errors:
                    raise self.errors[rid]
                if kind in ("map", "unique"):
                    state = self.merged[rid]
                    if kind == "map" and (not state["map"] or _raised(state["evr"])):
                        out.append(state["evr"])
                        continue
                    unexpected = (state["unexpected"] if kind == "map"
                                  else self._duplicates(config.kwargs["column"])[0])
                    nonnull = state["element"] - state["missing"]
                    mostly = config.kwargs.get("mostly")
                    success = (state["element"] == 0 or nonnull == 0 or _mostly_success(
                        nonnull, unexpected, 1 if mostly is None else mostly))
                    raw = _format_map_output(
                        result_format=parse_result_format(RESULT_FORMAT), success=success,
                        element_count=state["element"], nonnull_count=nonnull,
                        unexpected_count=unexpected, unexpected_list=state.get("partial", []))
                    out.append(config.to_domain_obj()._build_evr(raw_response=raw))
                elif kind == "schema":
                    out.append(self.merged[rid]["evr"])
                elif kind == "rows":
                    out.append(self._judge(config, {"table.row_count": self.rows}))
                elif kind == "moment":
                    name = MOMENTS[config.type]
                    out.append(self._judge(config, {name: self.moments.get(rid, _Moments()).metric(name)}))
                else:
                    out.append((distinct if kind == "distinct" else whole)[rid])
            except Exception as exc:  # noqa: BLE001  (as GX: the expectation fails, the run goes on)
                out.append(_failed_evr(config, exc))
        stats = calc_validation_statistics(out)
        return ExpectationSuiteValidationResult(
            success=stats.success, results=out, suite_name=self.first.suite_name,
            suite_parameters=self.first.suite_parameters, meta=self.first.meta,
            batch_id=self.first.batch_id,
            statistics={"evaluated_expectations": stats.evaluated_expectations,
                        "successful_expectations": stats.successful_expectations,
                        "unsuccessful_expectations": stats.unsuccessful_expectations,
                        "success_percent": stats.success_percent})

    def _judge(self, config, metrics: dict[str, Any]):
        expectation = config.to_domain_obj()
        raw = expectation._validate(metrics=metrics, runtime_configuration={
            "result_format": RESULT_FORMAT}, execution_engine=None)
        return expectation._build_evr(raw_response=raw)

    def _subsuite(self, kind: str) -> Any:
        return _gx_suite({**self.suite_json, "expectations": [
            e for e in self.suite_json["expectations"] if self.kinds[e["id"]] == kind]})

    def _distinct_results(self) -> dict[str, Any]:
        """``distinct`` expectations judged by GX on a frame of each column's distinct values
        (a column shorter than the longest repeats its first value: same set)."""
        import pandas as pd

        if "distinct" not in self.kinds.values():
            return {}
        if self._distinct is not None:
            return self._distinct
        longest = max((len(v) for v in self.distinct.values()), default=0)
        columns = {}
        for col, dtype in self.dtypes.items():
            if not any(self.kinds[e.id] == "distinct" and e.configuration.kwargs.get("column") == col
                       for e in self.suite.expectations):
                continue
            values = sorted(self.distinct.get(col, set()), key=repr)
            if values:
                values += [values[0]] * (longest - len(values))
            else:
                values = [None] * longest
            columns[col] = pd.Series(values, dtype=dtype)
        frame = pd.DataFrame(columns)
        self._distinct = {r.expectation_config.id: r
                          for r in self._validate(self._subsuite("distinct"), frame).results}
        return self._distinct

    def _whole_results(self) -> dict[str, Any]:
        """``whole`` expectations judged by GX on their columns of every row (after the last
        chunk; computed once)."""
        import pandas as pd

        if self.whole_columns is None:
            return {}
        if self._whole is None:
            frame = pd.concat(self.kept) if self.kept else pd.DataFrame()
            self.kept = []
            self._whole = {r.expectation_config.id: r
                           for r in self._validate(self._subsuite("whole"), frame).results}
        return self._whole


def _escape(value: Any) -> Any:
    """Every string inside ``value`` (dicts, lists, tuples) HTML-escaped."""
    if isinstance(value, str):
        return html.escape(value, quote=True)
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_escape(v) for v in value)
    return value


def render_data_docs(gx_result: Any) -> str:
    """The GX Data Docs page of one validation run, as standalone HTML.

    GX writes observed values (sample offending values, value counts) into the page as markup,
    unescaped, and they come from landing files anyone with write access to the landing area
    controls; so the page is rendered from a copy of the result whose strings are escaped (a
    value ``<script>`` shows as text, never runs).
    """
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    safe = copy.deepcopy(gx_result)
    for r in safe.results:  # the suite's own kwargs come from the repo and GX escapes them
        r.result = _escape(r.result)
        r.exception_info = _escape(r.exception_info)
    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(safe))


class DuplicateCounter:
    """Rows that repeat an earlier row in full (every column), counted chunk by chunk from a
    64-bit hash of each row (8 bytes a row; two distinct rows share a hash with probability about
    n^2 / 2^65: 7e-7 at 5M rows)."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.rows = 0

    def add(self, frame) -> None:
        import pandas as pd

        self.parts.append(pd.util.hash_pandas_object(frame, index=False).to_numpy())
        self.rows += len(frame)

    def count(self) -> int:
        import numpy as np

        if not self.rows:
            return 0
        hashes = np.concatenate(self.parts)
        self.parts = [hashes]
        return self.rows - len(np.unique(hashes))


def duplicate_rows(duplicates: int, rows: int, max_fraction: float) -> tuple[dict[str, Any], list[str]]:
    """The duplicate rows against the contract's bound."""
    dups = duplicates
    share = dups / rows if rows else 0.0
    doc = {"rows": dups, "fraction": round(share, 6), "max_fraction": max_fraction,
           "passed": share <= max_fraction}
    if doc["passed"]:
        return doc, []
    return doc, [f"duplicate rows: {dups:,} of {rows:,} rows ({share:.1%}) repeat an earlier "
                 f"row in full, at most {max_fraction:.1%} allowed "
                 "(validation.max_duplicate_fraction; a span landed twice?)"]


def _fmt(v: Any) -> str:
    """A bound or a value as a person writes it: 17 not 17.0, strings quoted."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else repr(v)


def describe_failure(kind: str, kw: dict[str, Any], meta: dict[str, Any], res: dict) -> str:
    """One line in a data engineer's words for a failed expectation."""
    col = kw.get("column")
    n = res.get("unexpected_count")
    pct = res.get("unexpected_percent") or 0.0
    eg = ", ".join(_fmt(v) for v in list(dict.fromkeys(res.get("partial_unexpected_list") or []))[:3])
    observed = res.get("observed_value")
    if kind == "expect_table_row_count_to_be_between":
        hint = " (an empty file or a header with no rows?)" if not observed else ""
        return (f"row count: {_fmt(observed)} rows, expected between {_fmt(kw.get('min_value'))} "
                f"and {_fmt(kw.get('max_value'))}{hint}")
    if kind == "expect_table_columns_to_match_ordered_list":
        return f"columns: expected {kw['column_list']} in this order, found {observed}"
    if kind == "expect_column_values_to_be_of_type":
        return f"column {col}: type {kw['type_']} expected, found {observed}"
    if kind == "expect_column_values_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        if hi is None:
            want = f"{'>' if kw.get('strict_min') else '>='} {_fmt(lo)}"
            return f"column {col}: {n:,} values not {want} (e.g. {eg})"
        return f"column {col}: {n:,} values outside [{_fmt(lo)}, {_fmt(hi)}] (e.g. {eg})"
    if kind == "expect_column_values_to_not_be_in_set":
        shown = ", ".join(repr(v) for v in kw.get("value_set") or [])
        return (f"column {col}: {pct:.1f}% of values are {shown} (missing), at most "
                f"{1 - kw.get('mostly', 1.0):.0%} allowed ({n:,} rows)")
    if kind == "expect_column_values_to_not_be_null":
        return (f"column {col}: {pct:.1f}% missing, at most {1 - kw.get('mostly', 1.0):.0%} "
                f"allowed ({n:,} rows)")
    if meta.get("label_rate"):
        rate = (100 - pct) if str(meta["label_rate"]).endswith("_min") else pct
        return f"label {col}: {meta.get('contract', 'label mix out of band')}, found {rate:.1f}%"
    if kind == "expect_column_distinct_values_to_contain_set":
        lacking = res.get("partial_missing_list") or sorted(set(kw["value_set"]) - set(observed or []))
        return (f"column {col}: value(s) {', '.join(map(str, lacking))} never occur; "
                f"expected all of {', '.join(map(str, kw['value_set']))}")
    if kind == "expect_column_values_to_be_in_set":
        return (f"column {col}: {n:,} values ({pct:.1f}%) not among the allowed categories "
                f"(e.g. {eg}); allowed: {', '.join(map(str, kw['value_set']))}")
    return f"{kind} on {col or 'the table'} failed: {meta.get('contract', '')} observed {res}"


def summarise_gx(gx_result: Any, rows: int,
                 samples: dict[str, list[dict]]) -> tuple[list[dict], list[str]]:
    """Per-expectation records (observed values, sample offending rows) and failure lines.

    ``samples``: per expectation id, the first rows (in row order, as JSON records) whose value
    in the expectation's column is one of its reported unexpected values (SuiteStream.samples).
    """
    records, failures = [], []
    for r in gx_result.results:
        doc = r.to_json_dict()
        cfg_ = doc["expectation_config"]
        kw = {k: v for k, v in cfg_["kwargs"].items() if k != "batch_id"}
        res = doc.get("result") or {}
        rec = {"type": cfg_["type"], "kwargs": kw, "success": bool(r.success),
               "contract": (cfg_.get("meta") or {}).get("contract"),
               "observed": {k: v for k, v in res.items() if k in (
                   "observed_value", "element_count", "unexpected_count", "unexpected_percent",
                   "partial_unexpected_list", "partial_unexpected_counts")}}
        message = exception_message(doc.get("exception_info"))
        if message is not None:  # shortened: GX may quote a whole column in it
            rec["exception"] = message if len(message) <= 300 else message[:300] + "..."
        if not r.success and not rows and "column" in kw:
            rec["note"] = "not reported: the snapshot has no rows"
        elif not r.success:
            col, shown = kw.get("column"), samples.get(r.expectation_config.id)
            if shown and res.get("partial_unexpected_list"):
                rec["sample_rows"] = shown
            if rec.get("exception"):
                failures.append(f"{cfg_['type']} on {col or 'the table'} could not run: "
                                f"{rec['exception']}")
            else:
                failures.append(describe_failure(cfg_["type"], kw, cfg_.get("meta") or {}, res))
        records.append(rec)
    return records, failures


def malformed_summary(snapshot_uri: str | Path, count: int) -> tuple[list[dict], list[str]]:
    """The first malformed rows ingest recorded, and the lines that describe them."""
    if not count:
        return [], []
    path = Path(snapshot_uri) / "malformed.jsonl"
    rows = []
    if path.is_file():
        with path.open() as f:
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
                if len(rows) >= MALFORMED_SHOWN:
                    break
    shown = f"; the first {len(rows)} follow" if count > len(rows) else ""
    lines = [f"{count:,} source row(s) or file(s) could not be parsed by ingest{shown}:"]
    for m in rows:
        where = Path(m.get("file", "?")).name + (f" line {m['line']}" if m.get("line") else "")
        lines.append(f"unparsed {where}: {m.get('reason')}")
    return rows, lines


def baseline_profile(cfg: PipelineConfig, baseline: str) -> dict[str, Any]:
    """The drift profile stored when the baseline was validated, else one drawn from its rows."""
    stored = snapshots.validation_dir(baseline) / PROFILE
    if stored.is_file():
        prof = read_json(stored)
        bins = cfg.validation.drift.histogram_bins
        if all(len(p.get("counts", [0] * bins)) == bins for p in prof.values()):
            return prof
    return profile_snapshot(cfg, baseline)


def profile_snapshot(cfg: PipelineConfig, snapshot_uri: str | Path) -> dict[str, Any]:
    """The drift profile of a snapshot's rows, read chunk by chunk (a second pass for a numeric
    column with too many distinct values)."""
    from pipelines import drift

    profiler = drift.Profiler(cfg)
    for chunk in snapshots.iter_frames(cfg, snapshot_uri):
        profiler.add(chunk)
    if profiler.pending():
        for chunk in snapshots.iter_frames(cfg, snapshot_uri, columns=profiler.pending()):
            profiler.add_second(chunk, profiler.pending())
    return profiler.profile()


def _reuse(vdir: Path, contract: str) -> dict[str, Any] | None:
    """The stored verdict if this snapshot was already validated under the same contract."""
    stored = vdir / "result.json"
    if not stored.is_file():
        return None
    result = read_json(stored)
    if result.get("contract_sha256") == contract:
        return result
    superseded = vdir.parent / f".{vdir.name}.superseded-{time.strftime('%Y%m%dT%H%M%S')}"
    log.warning("the contract changed since %s was validated: validating again (old verdict "
                "kept in %s)", vdir.name, superseded.name)
    os.rename(vdir, superseded)
    return None


def _with_output_hash(result: dict[str, Any], vdir: Path) -> dict[str, Any]:
    """Fills the ValidationResult's sha256: the tree hash of the folder as written (lineage verify
    re-hashes it the same way), which result.json inside it cannot hold."""
    tree = sha256_tree(vdir)
    result["outputs"] = [{**o, "sha256": tree} if o["kind"] == "ValidationResult" else o
                         for o in result["outputs"]]
    return result


def _raise_if_rejected(result: dict[str, Any]) -> dict[str, Any]:
    if result["status"] != "accepted":
        head = f"snapshot {Path(result['snapshot_uri']).name} rejected by the data contract:"
        raise DataRejected("\n".join([head, *(f"- {f}" for f in result["failures"])]), result)
    return result


def validate(cfg: PipelineConfig, home: Path, ctx: RunContext, snapshot_uri: str,
             force: bool = False) -> dict[str, Any]:
    """Validates one snapshot against the data contract and drift limits.

    ``force`` does not rewrite a stored verdict (lineage points to it): a forced ingest makes a
    new snapshot revision, which gets its own verdict. A snapshot validated under an older
    contract is validated again.

    Returns:
        The step result (docs/CONTRACTS.md) with ``status`` "accepted".

    Raises:
        DataRejected: malformed rows, a failed expectation or drift beyond a limit; the message
            has one line per problem and ``.result`` is the stored result.
    """
    uri = str(Path(snapshot_uri).resolve())
    if not (Path(uri) / "provenance.json").is_file():
        raise PipelineError(f"{uri} is not a snapshot (no provenance.json); run ingest first")
    vdir = snapshots.validation_dir(uri)
    contract = contract_sha256(cfg)
    stored = _reuse(vdir, contract)
    if stored is not None:
        if force:
            log.warning("force: snapshot %s already has a verdict, which lineage may point to and "
                        "which is never rewritten; to validate the same bytes again, ingest with "
                        "force (a new snapshot revision) and validate that", Path(uri).name)
        log.info("snapshot %s already validated (%s): returning the stored result",
                 Path(uri).name, stored["status"])
        return _raise_if_rejected(_with_output_hash({**stored, "reused": True}, vdir))

    from pipelines import drift  # numpy and pandas: not imported when a verdict is reused

    started = time.monotonic()
    prov = snapshots.provenance(uri)
    malformed_rows, failures = malformed_summary(uri, int(prov.get("malformed_rows") or 0))
    suite_json = load_suite(cfg)
    baseline = snapshots.previous_accepted(cfg, home, uri)
    base_profile = baseline_profile(cfg, baseline) if baseline is not None else None

    # One pass over the rows, chunk by chunk: the suite, duplicates, this snapshot's drift
    # profile and the drift against the baseline (memory holds one chunk, not the snapshot).
    stream = SuiteStream(suite_json, cfg.validation.sample_rows)
    duplicates_counter = DuplicateCounter()
    profiler = drift.Profiler(cfg)
    comparer = drift.Comparer(cfg, base_profile) if base_profile is not None else None
    rows = 0
    for chunk in snapshots.iter_frames(cfg, uri):
        stream.add(chunk)
        duplicates_counter.add(chunk)
        profiler.add(chunk)
        if comparer is not None:
            comparer.add(chunk)
        rows += len(chunk)
    if not rows:
        stream.add(snapshots.empty_frame(cfg))  # the suite still runs: it reports the 0 rows
    # a second pass, over the columns that need one (every column for example rows)
    again = None if stream.second_pass_columns() else profiler.pending()
    if rows and (again is None or again):
        for chunk in snapshots.iter_frames(cfg, uri, columns=again):
            profiler.add_second(chunk, [c for c in profiler.pending() if c in chunk.columns])
            stream.add_second(chunk)
    gx_result = stream.result()
    records, gx_failures = summarise_gx(gx_result, rows, stream.samples)
    failures += gx_failures
    duplicates, dup_failures = duplicate_rows(duplicates_counter.count(), rows,
                                              cfg.validation.max_duplicate_fraction)
    failures += dup_failures

    drift_result: dict[str, Any] = {}
    if baseline is None:
        drift_note = "skipped: no earlier accepted snapshot to compare with (first snapshot)"
    elif not rows:
        drift_note = "skipped: the snapshot has no rows"
    else:
        assert comparer is not None
        drift_result = comparer.result()
        drifted = [n for n, d in drift_result.items() if not d["passed"]]
        failures += [drift.describe(n, drift_result[n]) for n in drifted]
        drift_note = (f"compared with {Path(baseline).name}: "
                      f"{len(drifted)} of {len(drift_result)} columns beyond their limit")
    log.info("drift %s", drift_note)

    status = "rejected" if failures else "accepted"
    report_json, report_html = vdir / "result.json", vdir / "data_docs.html"
    suite_file = suite_path(cfg)
    result = {
        "status": status,
        "snapshot_uri": uri,
        "snapshot_id": Path(uri).name,
        "golden": bool(prov.get("golden")),
        "rows": rows,
        "expectations": {"suite": suite_json.get("name"), "suite_uri": str(suite_file),
                         "run": len(records), "failed": sum(not r["success"] for r in records)},
        "results": records,
        "malformed": {"rows": int(prov.get("malformed_rows") or 0), "first": malformed_rows},
        "duplicates": duplicates,
        "drift": drift_result,
        "drift_note": drift_note,
        "baseline_uri": baseline,
        "failures": failures,
        "contract_sha256": contract,
        "validated_at": utcnow(),
        "run_id": ctx.run_id,
        "seconds": round(time.monotonic() - started, 2),
        "report_json": str(report_json),
        "report_html": str(report_html),
        "reused": False,
    }
    result["inputs"] = [
        artifact(ArtifactKind.SNAPSHOT, uri, sha256_tree(uri), None, snapshot_id=Path(uri).name),
        artifact(ArtifactKind.EXPECTATION_SUITE, suite_file, sha256_file(suite_file), suite_file.stat().st_size),
        *([artifact(ArtifactKind.SNAPSHOT, baseline, None, None, role="drift_baseline")] if baseline else []),
    ]
    result["outputs"] = [artifact(ArtifactKind.VALIDATION_RESULT, vdir, None, None, status=status,
                                  failed=len(failures))]
    with publish(vdir) as tmp:
        (tmp / "data_docs.html").write_text(render_data_docs(gx_result))
        if rows:
            write_json_atomic(tmp / PROFILE, profiler.profile())
        write_json_atomic(tmp / "result.json", result)
    result = _with_output_hash(read_json(report_json), vdir)  # a concurrent run's verdict stands
    log.info("snapshot %s %s (%d problems)", Path(uri).name, status, len(failures))
    return _raise_if_rejected(result)
