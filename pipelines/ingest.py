"""Step 1, ingest: a span (or a window of spans) of landing files into an immutable snapshot.

Called through ``runner.run_step("ingest", ...)`` by the CLI, ``pipelines run`` and the DAG.
The rows are parsed against the config schema and written as TFRecord of tf.Example, divided into
train and eval by a salted hash of the row key, stratified by label (see ``run_beam``); the golden
set goes to a single ``test`` split. Rows or files that do not parse are not
dropped silently: they go to ``malformed.jsonl`` with the reason, and the validation gate rejects a
snapshot that has any. The snapshot id is the sha256 of what went in (every source file's bytes,
the schema and the split settings), so ingesting the same bytes again returns the same snapshot and
writes nothing. The work runs as an Apache Beam pipeline (runner and options from the config).
"""

from __future__ import annotations

import bisect
import datetime as dt
import glob
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

from pipelines import csv_parse
from pipelines.beam_options import pipeline_options
from pipelines.config import PipelineConfig
from pipelines.context import RunContext, code_version, utcnow
from pipelines.errors import PipelineError
from pipelines.hashing import StatCache, sha256_json, sha256_tree
from pipelines.results import ArtifactKind, artifact
from pipelines.snapshots import GOLDEN_SPLIT, SPLITS, hash_cache_file, snapshots_root
from pipelines.store import publish, read_json, resolve_landing, revision, write_json_atomic

log = logging.getLogger(__name__)
INGEST_FORMAT = 5  # bump when the snapshot layout or parsing changes: it is part of the id
# 5: the split plan per span (a span's split does not depend on its window) and the train split
# one file per span, train/data-<span>-*.tfrecord (transform's analyzer cache per span)


def span_regex(pattern: str) -> re.Pattern:
    """A regex matching the files of ``pattern`` and capturing the span part."""
    parts = re.split(r"(\{span\}|\*\*|\*|\?)", pattern)
    out = []
    for part in parts:
        out.append({"{span}": r"(?P<span>[^/]+)", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            part, re.escape(part)))
    return re.compile("^" + "".join(out) + "$")


def available_spans(cfg: PipelineConfig, landing: Path) -> dict[dt.date, list[str]]:
    """Every span found in the landing area: date -> sorted file list."""
    pattern = cfg.source.uri_pattern.replace("{landing}", str(landing))
    regex = span_regex(pattern)
    spans: dict[dt.date, list[str]] = {}
    for path in glob.glob(pattern.replace("{span}", "*")):
        m = regex.match(path)
        if not m:
            continue
        try:
            day = dt.datetime.strptime(m.group("span"), cfg.source.span_format).date()
        except ValueError:
            continue  # a folder that is not a span (golden/, a README, ...)
        spans.setdefault(day, []).append(path)
    return {d: sorted(files) for d, files in sorted(spans.items())}


def resolve_files(cfg: PipelineConfig, landing: Path, span: dt.date | None, window: int,
                  golden: bool) -> tuple[list[str], list[str]]:
    """The span labels and files to ingest; a clear error naming the pattern when none match."""
    if golden:
        if not cfg.source.golden_pattern:
            raise PipelineError(f"pipeline {cfg.name!r} has no source.golden_pattern configured")
        pattern = cfg.source.golden_pattern.replace("{landing}", str(landing))
        files = sorted(glob.glob(pattern))
        if not files:
            raise PipelineError(f"no golden set file matches {pattern}; run `pipelines demo-data` "
                                "or copy the golden set there")
        return ["golden"], check_landing_files(cfg, landing, files)
    spans = available_spans(cfg, landing)
    if span is None:
        if not spans:
            raise PipelineError(f"no span files match {cfg.source.uri_pattern} under {landing}")
        span = max(spans)
    if span not in spans:
        pattern = cfg.source.uri_pattern.replace("{landing}", str(landing)).replace(
            "{span}", span.strftime(cfg.source.span_format))
        raise PipelineError(f"span {span.isoformat()}: no file matches {pattern}")
    chosen = [d for d in spans if d <= span][-window:]
    if len(chosen) < window:
        log.warning("window of %d spans ending %s: only %d spans exist (%s)", window, span,
                    len(chosen), ", ".join(d.isoformat() for d in chosen))
    return ([d.isoformat() for d in chosen],
            check_landing_files(cfg, landing, [f for d in chosen for f in spans[d]]))


def check_landing_files(cfg: PipelineConfig, landing: Path, files: list[str]) -> list[str]:
    """The files to read, each a regular file inside the landing area no larger than
    ``source.max_file_bytes``; anything else is refused by name before a byte of it is read.

    A symbolic link (or a linked folder) is followed only when it resolves inside the landing area,
    and the resolved path is what gets read and recorded. FIFOs, devices, sockets and folders named
    like a landing file are refused: none is opened.
    """
    root = os.path.realpath(landing)
    cap = cfg.source.max_file_bytes
    out, problems = [], []
    for f in files:
        real = os.path.realpath(f)
        if os.path.commonpath([real, root]) != root:
            problems.append(f"{f}: a symbolic link (or under a linked folder) that leads outside "
                            f"the landing area {root}; refused, not followed (copy the file in)")
            continue
        try:
            info = os.stat(real)
        except OSError as exc:
            problems.append(f"{f}: cannot be read ({exc.strerror})")
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{f}: {csv_parse.file_kind(info.st_mode)}, not a regular file; "
                            "refused, not read (remove it from the landing area)")
        elif info.st_size > cap:
            problems.append(f"{f}: {info.st_size:,} bytes, over source.max_file_bytes ({cap:,}); "
                            "refused, not read (raise the limit in the config if the file is "
                            "genuine)")
        else:
            out.append(real)
    if problems:
        raise PipelineError(f"{len(problems)} landing file(s) refused:\n"
                            + "\n".join(f"- {p}" for p in problems))
    return out


def describe_files(files: list[str], max_bytes: int | None = None,
                   cache: StatCache | None = None, use_cache: bool = True) -> list[dict[str, Any]]:
    """Size, time and sha256 of each file as it is now: what decides the snapshot id before the
    files are parsed (to find an existing snapshot of the same bytes). What provenance records is
    what the parser read (:func:`parsed_files`), and ingest refuses a file whose bytes changed in
    between.

    With ``cache`` a file whose stat is unchanged since it was hashed is not read again
    (:class:`~pipelines.hashing.StatCache`, its known limit included); ``use_cache=False`` reads
    every file and only refreshes the cache."""
    out = []
    for f in files:
        if cache is not None and use_cache:
            try:
                st = os.stat(f)
            except OSError as exc:
                raise PipelineError(f"{f}: cannot be read ({exc.strerror})") from None
            known = cache.lookup(f, st)
            if known is not None and stat.S_ISREG(st.st_mode):
                cache.hits += 1
                out.append({"uri": os.path.abspath(f), "size": st.st_size,
                            "mtime": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat(),
                            "sha256": known})
                continue
        try:
            raw = csv_parse.open_regular(f)
        except csv_parse.NotRegular as exc:
            raise PipelineError(f"{f}: {exc}") from None
        stream = csv_parse.HashingStream(raw, max_bytes)
        try:
            with raw:
                before = os.fstat(raw.fileno())
                stream.drain()
                st = os.fstat(raw.fileno())
        except csv_parse.TooLarge:
            raise PipelineError(f"{f}: grew over source.max_file_bytes ({max_bytes:,}) while it "
                                "was hashed; refused") from None
        if cache is not None:
            cache.misses += 1
            cache.record(f, before, st, stream.sha.hexdigest())
        out.append({"uri": os.path.abspath(f), "size": stream.size,
                    "mtime": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat(),
                    "sha256": stream.sha.hexdigest()})
    return out


def parsed_files(out: Path, described: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The files as the parser read them (size and sha256 of exactly the bytes parsed), checked
    against what decided the snapshot id; a file that changed in between is refused by name."""
    def read(name: str) -> dict[str, dict] | None:
        path = out / name
        if not path.is_file():
            return None
        docs = {doc["uri"]: doc for doc in map(json.loads, path.read_text().splitlines())}
        path.unlink()
        return docs

    parsed = read(".files.jsonl") or {}
    scanned = read(".scanned.jsonl")  # the split plan's first pass (run_beam); golden has none
    problems, files = [], []
    for f in described:
        got = parsed.get(f["uri"])
        first = None if scanned is None else scanned.get(f["uri"], {"size": -1, "sha256": ""})
        if first is not None and (first["size"], first["sha256"]) != (f["size"], f["sha256"]):
            problems.append(f"{f['uri']}: changed while it was ingested ({f['size']:,} bytes "
                            f"when listed, {first['size']:,} bytes read by the split plan's pass)")
        elif got is None:
            problems.append(f"{f['uri']}: not read to its end (see malformed.jsonl: it was "
                            "replaced by something that is not a regular file, or grew over "
                            "source.max_file_bytes, while it was ingested)")
        elif (got["size"], got["sha256"]) != (f["size"], f["sha256"]):
            problems.append(f"{f['uri']}: changed while it was ingested ({f['size']:,} bytes "
                            f"when listed, {got['size']:,} bytes parsed)")
        else:
            files.append({**f, "size": got["size"], "sha256": got["sha256"]})
    if problems:
        raise PipelineError("landing files changed under ingest; nothing was published. Ingest "
                            "again once the landing writer has finished:\n"
                            + "\n".join(f"- {p}" for p in problems))
    return files


def snapshot_identity(cfg: PipelineConfig, spans: list[str], files: list[dict], golden: bool) -> str:
    """sha256 of everything that determines a snapshot's content."""
    return sha256_json({
        "format": INGEST_FORMAT,
        "golden": golden,
        "spans": spans,
        "files": sorted(f["sha256"] for f in files),
        "columns": [c.model_dump() for c in cfg.columns],
        "source": cfg.source.model_dump(exclude={"uri_pattern", "golden_pattern",
                                                 "max_file_bytes"}),
        "label": cfg.label.model_dump(),
        "row_key": cfg.row_key,
        "split": None if golden else cfg.split.model_dump(),
    })


class SplitPlan:
    """The logic of a Beam CombineFn (:func:`split_plan`) over ``(label, row hash)`` of every valid row: the split plan.

    Its output is ``{"edges": [...] or None, "cutoffs": {stratum: hash}}``: for regression the
    inner edges dividing the sorted targets into ``quantiles`` groups (``None`` for
    classification), and per stratum the hash at or below which a row goes to eval (-1: none do),
    the ``round(eval_fraction * n)``-th lowest hash of the stratum's ``n`` rows.

    The accumulator keeps 8 bytes per row (the hash; regression adds the target) in flat arrays,
    not the rows: ingest's memory no longer grows with the row payloads (issue 11 item 5). At 5M
    rows that is 40 MB (80 MB for regression), sorted once at the end.
    """

    def __init__(self, fraction: float, quantiles: int | None):
        self.fraction, self.quantiles = fraction, quantiles

    def create_accumulator(self) -> dict[str, Any]:
        from array import array

        return {"targets": array("d"), "hashes": array("d")} if self.quantiles else {}

    def add_input(self, acc: dict[str, Any], item: tuple[str | float, float]) -> dict[str, Any]:
        from array import array

        label, row_hash = item
        if self.quantiles:
            acc["targets"].append(float(label))
            acc["hashes"].append(row_hash)
        else:
            key = str(label)
            if key not in acc:
                acc[key] = array("d")
            acc[key].append(row_hash)
        return acc

    def merge_accumulators(self, accs) -> dict[str, Any]:
        out = self.create_accumulator()
        for acc in accs:
            for key, values in acc.items():
                if key in out:
                    out[key].extend(values)
                else:
                    out[key] = values
        return out

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        if not self.quantiles:
            return {"edges": None,
                    "cutoffs": {str(k): eval_cutoff(np.frombuffer(v), self.fraction)
                                for k, v in acc.items()}}
        targets = np.frombuffer(acc["targets"]) if len(acc["targets"]) else np.zeros(0)
        hashes = np.frombuffer(acc["hashes"]) if len(acc["hashes"]) else np.zeros(0)
        edges = quantile_edges(np.sort(targets), self.quantiles)
        strata = np.searchsorted(np.asarray(edges, dtype=float), targets, side="right")
        return {"edges": edges,
                "cutoffs": {f"q{q:02d}": eval_cutoff(hashes[strata == q], self.fraction)
                            for q in np.unique(strata).tolist()}}


def split_plan(fraction: float, quantiles: int | None):
    """:class:`SplitPlan` as a Beam CombineFn (Beam is imported only when ingest runs)."""
    import apache_beam as beam

    class SplitPlanFn(SplitPlan, beam.CombineFn):
        pass

    return SplitPlanFn(fraction, quantiles)


def eval_cutoff(hashes, fraction: float) -> float:
    """The hash at or below which a stratum's rows go to eval (-1: none do): the
    ``round(fraction * n)``-th lowest of the stratum's ``n`` row hashes."""
    import numpy as np

    k = round(fraction * len(hashes))
    return float(np.partition(hashes, k - 1)[k - 1]) if k else -1.0


def quantile_edges(values, quantiles: int) -> list[float]:
    """Inner edges dividing sorted targets into ``quantiles`` groups of about equal size."""
    if not len(values):
        return []
    return sorted({float(values[len(values) * i // quantiles]) for i in range(1, quantiles)})


def stratum(label: str | float, edges: list[float] | None) -> str:
    """The stratum of a row: its class, or for a regression target its quantile (``q03``)."""
    if edges is None:
        return str(label)
    return f"q{bisect.bisect_right(edges, float(label)):02d}"


def assign_split(parser: csv_parse.RowParser, uri: str, plan: dict[str, Any]):
    """Every record of one file, its rows routed to train or eval by ``plan`` (:class:`SplitPlan`):
    ``(split, uri, stratum, payload, hash)``; malformed and file records pass through."""
    edges, cutoffs = plan["edges"], plan["cutoffs"]
    for rec in parser.parse_file(uri):
        if rec[0] != csv_parse.ROW:
            yield rec
            continue
        key = stratum(rec[2], edges)
        yield ("eval" if rec[4] <= cutoffs.get(key, -1.0) else "train", rec[1], key, *rec[3:])


def file_spans(cfg: PipelineConfig, files: list[str]) -> dict[str, str]:
    """The span label (ISO date, as :func:`resolve_files` gives it) of each landing file, read
    from ``source.uri_pattern``; a file the pattern does not date is in span ``window``."""
    regex = span_regex(cfg.source.uri_pattern.replace("{landing}", "**"))
    out = {}
    for f in files:
        m = regex.match(f)
        try:
            day = dt.datetime.strptime(m.group("span"), cfg.source.span_format) if m else None
        except ValueError:
            day = None
        out[f] = day.date().isoformat() if day else "window"
    return out


def run_beam(cfg: PipelineConfig, files: list[str], out: Path, golden: bool) -> None:
    """The Beam pipeline: parse every file, route rows to splits, write TFRecords and stats.

    Splits are stratified by label within each span: within each stratum (a class; for
    regression a quantile of the target) of a span the rows whose key hash is among the lowest
    ``eval_fraction`` go to eval, so both splits keep the label mix of the whole. Per span, so a
    span's rows fall in the same split in every window that holds it: a row evaluated yesterday
    is not trained on today, and a span's train rows (written one file per span,
    ``train/data-<span>-*``) are the same, which lets transform reuse their analysis. The
    assignment is a pure function of the span's rows and the salt (the same on any runner and any
    run); adding rows to a span only moves the few of its rows whose hash sits right at a cutoff.

    Memory does not hold the rows: the files are read twice. A first pass checks every row as the
    parser does but builds no tf.Example, and keeps only each valid row's label and hash
    (:func:`split_plan`, 8 bytes a row); the second pass parses, routes (:func:`assign_split`, the
    plan as a side input) and writes in the same fused stage, so the rows stream from file to
    TFRecord. Both passes hash the bytes they read; :func:`parsed_files` refuses a file that
    changed between them.
    """
    import dataclasses

    import apache_beam as beam

    parser = csv_parse.RowParser.from_config(cfg)
    splits = [GOLDEN_SPLIT] if golden else list(SPLITS)
    kinds = (csv_parse.ROW, csv_parse.MALFORMED, csv_parse.FILE)
    by_kind = lambda rec, n: kinds.index(rec[0])  # noqa: E731
    with beam.Pipeline(options=pipeline_options(cfg, step="ingest")) as p:
        files_pc = p | "Files" >> beam.Create(files)
        if golden:
            parsed = files_pc | "Parse" >> beam.FlatMap(
                lambda uri: ((GOLDEN_SPLIT, *rec[1:]) if rec[0] == csv_parse.ROW else rec
                             for rec in parser.parse_file(uri)))
        else:
            span_of = file_spans(cfg, files)
            scanner = dataclasses.replace(parser, build_examples=False)
            scan_rows, _, scanned = (
                files_pc | "Scan" >> beam.FlatMap(scanner.parse_file)
                | "ScanKind" >> beam.Partition(by_kind, len(kinds)))  # type: ignore[arg-type]
            plan = (scan_rows
                    | "Keys" >> beam.Map(lambda rec: (span_of[rec[1]], (rec[2], rec[4])))
                    | "Plan" >> beam.CombinePerKey(split_plan(
                        cfg.split.eval_fraction,
                        cfg.split.quantiles if cfg.task == "regression" else None)))
            (scanned  # the bytes the first pass read, checked like the second's (parsed_files)
             | "PayloadScan" >> beam.Map(lambda rec: rec[3])
             | "WriteScan" >> beam.io.WriteToText(str(out / ".scanned"), file_name_suffix=".jsonl",
                                                  shard_name_template=""))
            parsed = files_pc | "Parse" >> beam.FlatMap(
                lambda uri, plans: assign_split(parser, uri, plans.get(
                    span_of[uri], {"edges": None, "cutoffs": {}})),
                plans=beam.pvalue.AsDict(plan))
        routed, bad, read = parsed | "Kind" >> beam.Partition(
            lambda rec, n: 2 if rec[0] == csv_parse.FILE else 1 if rec[0] == csv_parse.MALFORMED
            else 0, 3)  # type: ignore[arg-type]
        by_split = routed | "Route" >> beam.Partition(
            lambda rec, n: splits.index(rec[0]), len(splits))  # type: ignore[arg-type]
        labels = [] if golden else sorted(set(span_of.values()))
        for i, split in enumerate(splits):
            if split == "train":  # files per span: train/data-<span>-00000-of-00001.tfrecord
                # No num_shards: a fixed shard count makes Beam group every row by shard first
                # (a GroupByKey the in-process runner holds in memory); written per bundle, the
                # rows stream to the file (one bundle, one file, on the DirectRunner).
                by_span = by_split[i] | "RouteSpan" >> beam.Partition(
                    lambda rec, n: labels.index(span_of[rec[1]]), len(labels))  # type: ignore[arg-type]
                for label, rows_of_span in zip(labels, by_span, strict=True):
                    (rows_of_span
                     | f"Payload{split}[{label}]" >> beam.Map(lambda rec: rec[3])
                     | f"Write{split}[{label}]" >> beam.io.WriteToTFRecord(
                         str(out / split / f"data-{label}"), file_name_suffix=".tfrecord"))
                continue
            (by_split[i]
             | f"Payload{split}" >> beam.Map(lambda rec: rec[3])
             | f"Write{split}" >> beam.io.WriteToTFRecord(
                 str(out / split / "data"), file_name_suffix=".tfrecord"))
        (bad
         | "PayloadBad" >> beam.Map(lambda rec: rec[3])
         | "WriteBad" >> beam.io.WriteToText(str(out / "malformed"), file_name_suffix=".jsonl",
                                             shard_name_template=""))
        (read  # the size and sha256 of the bytes each file's parse read (parsed_files)
         | "PayloadFile" >> beam.Map(lambda rec: rec[3])
         | "WriteFiles" >> beam.io.WriteToText(str(out / ".files"), file_name_suffix=".jsonl",
                                               shard_name_template=""))
        # Rows per (split, file, stratum), counted in the parse stage itself (the count's combiner
        # is lifted into it) before the two branches meet: the in-process runner materializes
        # whatever a Flatten joins, so flattening the rows would hold every payload in memory.
        counts = [recs
                  | f"StatKey{name}" >> beam.Map(
                      lambda rec: (json.dumps([rec[0], rec[1], str(rec[2])]), 1))
                  | f"Count{name}" >> beam.CombinePerKey(sum)
                  for name, recs in (("Rows", routed), ("Bad", bad))]
        (counts  # disjoint keys: a row's split is never "malformed"
         | "All" >> beam.Flatten()
         | "StatLine" >> beam.MapTuple(lambda k, n: json.dumps([*json.loads(k), n]))
         | "WriteStats" >> beam.io.WriteToText(str(out / ".stats"), file_name_suffix=".jsonl",
                                               shard_name_template=""))


def label_balance(counts: dict[str, int], cfg: PipelineConfig) -> dict[str, Any]:
    """Rows per class (per target quantile for regression) and their rates; binary adds the
    positive count and rate."""
    total = sum(counts.values())
    out: dict[str, Any] = {
        "counts": dict(sorted(counts.items())),
        "rates": {k: round(n / total, 4) for k, n in sorted(counts.items())} if total else {},
    }
    if cfg.task == "binary":
        pos = counts.get(str(cfg.label.positive_class), 0)
        out.update(positive=pos, negative=total - pos,
                   positive_rate=round(pos / total, 4) if total else None)
    return out


def summarise(cfg: PipelineConfig, out: Path, splits: list[str],
              file_info: list[dict]) -> dict[str, Any]:
    """Row counts and label balance per split and per file, from the pipeline's stats file."""
    rows = {s: 0 for s in splits}
    by_label: dict[str, dict[str, int]] = {s: {} for s in splits}
    per_file: dict[str, int] = {}
    malformed = 0
    stats_file = out / ".stats.jsonl"
    for line in stats_file.read_text().splitlines():
        split, uri, label, n = json.loads(line)
        per_file[uri] = per_file.get(uri, 0) + n
        if split == csv_parse.MALFORMED:
            malformed += n
            continue
        rows[split] += n
        by_label[split][label] = by_label[split].get(label, 0) + n
    stats_file.unlink()
    for f in file_info:
        f["rows"] = per_file.get(f["uri"], 0)
    balance = {s: label_balance(by_label[s], cfg) for s in splits}
    return {"rows": {"total": sum(rows.values()), **rows}, "label_balance": balance,
            "malformed_rows": malformed}


def ingest(cfg: PipelineConfig, home: Path, ctx: RunContext, span: dt.date | None = None,
           window: int = 1, golden: bool = False, landing: Path | None = None,
           force: bool = False) -> dict[str, Any]:
    """Ingests a span, a window of spans ending at ``span``, or the golden set.

    Landing files must be regular files inside the landing area, no larger than
    ``source.max_file_bytes`` (:func:`check_landing_files`). Each file is read once by the parser,
    which hashes what it reads; provenance records those sizes and hashes, and a file whose bytes
    changed since they were listed is refused (:func:`parsed_files`), nothing published.

    ``force`` ingests again even when a snapshot of the same bytes exists: the new snapshot is
    ``<id>-r<N>`` beside the old one (validated afresh), and the old one, which lineage may point
    to, is left untouched.

    Returns:
        The step result (docs/CONTRACTS.md): snapshot id and URI, whether an identical snapshot
        was reused, spans, row counts, malformed row count, and the input and output artifacts.
    """
    landing = resolve_landing(Path(home), landing)
    spans, files = resolve_files(cfg, landing, span, window, golden)
    cache = StatCache(hash_cache_file(cfg, home))
    file_info = describe_files(files, cfg.source.max_file_bytes, cache, use_cache=not force)
    identity = snapshot_identity(cfg, spans, file_info, golden)
    snapshot_id = identity[:16]
    final = snapshots_root(cfg, home) / snapshot_id
    reused = final.is_dir() and not force
    if force and final.is_dir():  # never over an artifact lineage may point to: a new revision
        final = revision(final)
        snapshot_id = final.name
    if reused:
        log.info("snapshot %s already holds these bytes: reusing it, writing nothing", snapshot_id)
        prov = read_json(final / "provenance.json")
    else:
        splits = [GOLDEN_SPLIT] if golden else list(SPLITS)
        log.info("ingesting %d files (%d spans: %s) into snapshot %s", len(files), len(spans),
                 ", ".join(spans), snapshot_id)
        with publish(final) as out:
            run_beam(cfg, files, out, golden)
            try:
                file_info = parsed_files(out, file_info)
            except PipelineError:
                for f in file_info:  # whatever the listing hashed is not to be trusted again
                    cache.forget(f["uri"])
                cache.save()
                raise
            for split in splits:
                (out / split).mkdir(exist_ok=True)
            summary = summarise(cfg, out, splits, file_info)
            prov = {
                "snapshot_id": snapshot_id,
                "identity_sha256": identity,
                "pipeline": cfg.name,
                "golden": golden,
                "spans": spans,
                "files": file_info,
                **summary,
                "split": None if golden else {**cfg.split.model_dump(), "by": cfg.row_key or "row"},
                "ingested_at": utcnow(),
                "code_version": code_version(),
                "config_sha256": cfg.sha256,
                "run_id": ctx.run_id,
                "beam": dict(zip(("runner", "options"), cfg.beam.for_step("ingest"), strict=True)),
                "content_sha256": sha256_tree(out),
            }
            write_json_atomic(out / "provenance.json", prov)
        log.info("snapshot %s: %d rows (%s), %d malformed", snapshot_id, prov["rows"]["total"],
                 ", ".join(f"{k} {v}" for k, v in prov["rows"].items() if k != "total"),
                 prov["malformed_rows"])
    # The artifact's hash: every file, provenance.json included (a reused snapshot's unchanged
    # files come from the cache: its reuse reads no data file).
    tree_sha = sha256_tree(final, cache)
    cache.save()
    inputs = [artifact(ArtifactKind.SOURCE_FILE, f["uri"], f["sha256"], f["size"], mtime=f["mtime"],
                       rows=f.get("rows")) for f in prov["files"]]
    outputs = [artifact(ArtifactKind.SNAPSHOT, final, tree_sha, None, content_sha256=prov["content_sha256"], snapshot_id=snapshot_id,
                        rows=prov["rows"], spans=prov["spans"], golden=golden,
                        malformed_rows=prov["malformed_rows"])]
    return {
        "snapshot_id": snapshot_id,
        "uri": str(final),
        "reused": reused,
        "golden": golden,
        "spans": prov["spans"],
        "rows": prov["rows"],
        "label_balance": prov["label_balance"],
        "malformed_rows": prov["malformed_rows"],
        "provenance_uri": str(final / "provenance.json"),
        "sha256": tree_sha,
        "inputs": inputs,
        "outputs": outputs,
    }
