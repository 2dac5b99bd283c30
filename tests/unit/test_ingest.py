"""Ingestion: provenance, idempotence, content addressing, and clear errors, on the real data."""

from __future__ import annotations

import csv
import shutil

import pytest

from pipelines.errors import PipelineError
from pipelines.hashing import sha256_file, sha256_tree
from pipelines.ingest import ingest
from pipelines.sample_data import stage_sample_data
from pipelines.snapshots import hash_cache_file, read_frame
from tests.conftest import END_DATE, RAW_DIR, SHARED_DATA

pytestmark = pytest.mark.slow


def test_demo_data_stages_seven_spans_and_golden(staged):
    assert len(staged["spans"]) == 7 and staged["spans"][-1] == END_DATE.isoformat()
    rows = [f["rows"] for f in staged["files"]]
    assert sum(rows[:7]) == 32561 and rows[7] == 16281
    golden = list(csv.reader(open(staged["golden"])))
    assert golden == list(csv.reader(open(SHARED_DATA / "adult_test.csv")))


def test_demo_data_refuses_files_that_differ(tmp_path, adult_cfg):
    raw = tmp_path / "raw"
    shutil.copytree(RAW_DIR, raw)
    with open(raw / "adult.data", "ab") as f:
        f.write(b"1,2,3\n")
    with pytest.raises(PipelineError, match="sha256"):
        stage_sample_data(adult_cfg, tmp_path / "home", END_DATE, from_dir=raw)
    assert not (tmp_path / "home" / "landing" / "adult").exists()


def test_provenance_record_is_complete(snapshot, staged):
    prov = __import__("json").load(open(snapshot["provenance_uri"]))
    assert [f["uri"] for f in prov["files"]] == [f["uri"] for f in staged["files"][:7]]
    for rec, src in zip(prov["files"], staged["files"][:7], strict=True):
        assert rec["sha256"] == sha256_file(src["uri"]) and rec["rows"] == src["rows"]
        assert rec["size"] > 0 and rec["mtime"]
    assert prov["rows"] == {"total": 32561, "train": prov["rows"]["train"],
                            "eval": prov["rows"]["eval"]}
    assert prov["label_balance"]["train"]["positive"] + prov["label_balance"]["eval"]["positive"] == 7841
    assert prov["malformed_rows"] == 0
    assert len(prov["content_sha256"]) == 64 and prov["config_sha256"]
    assert {"git_sha", "dirty", "package_version"} <= set(prov["code_version"])
    assert prov["run_id"] == "pytest-session" and prov["ingested_at"]


def test_ingest_is_idempotent(adult_cfg, pipeline_home, ctx, snapshot):
    root = pipeline_home / "snapshots" / "adult"
    cache = hash_cache_file(adult_cfg, pipeline_home)  # may be written by the reuse: not an artifact
    before = sorted(p.name for p in root.iterdir() if p != cache)
    again = ingest(adult_cfg, pipeline_home, ctx, span=END_DATE, window=7)
    assert again["reused"] and again["snapshot_id"] == snapshot["snapshot_id"]
    assert again["sha256"] == snapshot["sha256"]
    assert sorted(p.name for p in root.iterdir() if p != cache) == before


def test_force_ingests_again_and_keeps_the_old_copy(adult_cfg, tmp_path, ctx, staged):
    first = ingest(adult_cfg, tmp_path, ctx, span=END_DATE, landing=staged["landing"])
    again = ingest(adult_cfg, tmp_path, ctx, span=END_DATE, landing=staged["landing"], force=True)
    assert not again["reused"] and again["snapshot_id"] == first["snapshot_id"] + "-r1"
    assert read_frame(adult_cfg, again["uri"]).equals(read_frame(adult_cfg, first["uri"]))
    root = tmp_path / "snapshots" / "adult"
    assert sha256_tree(first["uri"]) == first["sha256"]  # the old one is untouched, in place
    # nothing half-written or set aside: the ingest stat cache is the one dot file kept there
    cache = hash_cache_file(adult_cfg, tmp_path)
    assert not [p.name for p in root.iterdir() if p.name.startswith(".") and p != cache]


def test_changed_bytes_make_a_new_snapshot_and_splits_are_stable(adult_cfg, tmp_path, ctx, staged):
    landing = tmp_path / "landing"
    day = END_DATE.isoformat()
    shutil.copytree(f"{staged['landing']}/adult/{day}", landing / "adult" / day)
    one = ingest(adult_cfg, tmp_path / "h1", ctx, span=END_DATE, landing=landing)
    two = ingest(adult_cfg, tmp_path / "h2", ctx, span=END_DATE, landing=landing)
    assert one["snapshot_id"] == two["snapshot_id"] and not two["reused"]
    assert read_frame(adult_cfg, one["uri"], "eval").equals(read_frame(adult_cfg, two["uri"], "eval"))
    part = landing / "adult" / day / "part-00000.csv"
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:-1]))
    three = ingest(adult_cfg, tmp_path / "h1", ctx, span=END_DATE, landing=landing)
    assert three["snapshot_id"] != one["snapshot_id"] and three["rows"]["total"] == one["rows"]["total"] - 1


def test_span_without_files_names_the_pattern(adult_cfg, pipeline_home, ctx, staged):
    with pytest.raises(PipelineError, match=r"span 2020-01-01: no file matches .*/adult/2020-01-01/\*\.csv"):
        ingest(adult_cfg, pipeline_home, ctx, span=__import__("datetime").date(2020, 1, 1))


def test_headerless_csv_and_parquet_sources(adult_cfg, tmp_path, ctx, staged):
    import pandas as pd

    day = END_DATE.isoformat()
    src = f"{staged['landing']}/adult/{day}/part-00000.csv"
    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    (tmp_path / "csv" / "adult" / day).mkdir(parents=True)
    frame.to_csv(tmp_path / "csv" / "adult" / day / "p.csv", header=False, index=False)
    (tmp_path / "pq" / "adult" / day).mkdir(parents=True)
    typed = frame.astype({c.name: "int64" for c in adult_cfg.columns if c.type == "int"})
    typed.to_parquet(tmp_path / "pq" / "adult" / day / "p.parquet")

    base = ingest(adult_cfg, tmp_path / "h0", ctx, span=END_DATE, landing=staged["landing"])
    src_cfg = adult_cfg.source
    headerless = adult_cfg.model_copy(update={"source": src_cfg.model_copy(update={"header": False})})
    parquet = adult_cfg.model_copy(update={"source": src_cfg.model_copy(update={
        "format": "parquet", "uri_pattern": "{landing}/adult/{span}/*.parquet"})})
    for cfg, landing in ((headerless, tmp_path / "csv"), (parquet, tmp_path / "pq")):
        res = ingest(cfg, tmp_path / "h", ctx, span=END_DATE, landing=landing)
        assert res["rows"] == base["rows"] and res["malformed_rows"] == 0
        assert read_frame(cfg, res["uri"]).sort_values(list(frame.columns)).reset_index(drop=True).equals(
            read_frame(adult_cfg, base["uri"]).sort_values(list(frame.columns)).reset_index(drop=True))
