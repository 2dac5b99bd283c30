"""Issue 14 (items 9-11): what a hostile or careless landing-area writer can put there is refused
or reported by name, never followed, never hangs ingest, never crashes it, never runs in a page.

The parser-level tests call the real parser (pipelines/csv_parse.py) on real files; the
ingest-level ones run the real Beam ingest and GX validation through the ``gate`` fixture.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from pipelines import csv_parse
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_tree
from tests.data.conftest import BAD_SPAN, stage, to_csv

pytestmark = pytest.mark.slow

PASSWD = Path("/etc/passwd")


@contextlib.contextmanager
def deadline(seconds: int):
    """Fails the test (instead of hanging forever) if the block takes longer than ``seconds``."""
    def alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: ingest hangs")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def span_dir(gate, day=BAD_SPAN) -> Path:
    return gate.landing / "adult" / day.isoformat()


def everything_under(root: Path) -> str:
    """The text of every file under ``root`` (to check a secret appears nowhere)."""
    out = []
    for p in root.rglob("*") if root.exists() else []:
        if p.is_file() and not p.is_symlink():
            out.append(p.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


def records(cfg, path: Path) -> list[tuple]:
    return list(csv_parse.RowParser.from_config(cfg).parse_file(str(path)))


def malformed(recs) -> list[dict]:
    return [json.loads(r[3]) for r in recs if r[0] == csv_parse.MALFORMED]


# -- files that are not regular files inside the landing area -------------------------------------

def test_symlink_out_of_the_landing_area_is_refused_unread(gate, span_text):
    if not PASSWD.is_file():
        pytest.skip("no /etc/passwd on this machine")
    stage(gate.landing, BAD_SPAN, span_text)
    link = span_dir(gate) / "evil.csv"
    link.symlink_to(PASSWD)
    first_line = PASSWD.read_text().splitlines()[0]
    with pytest.raises(PipelineError) as info:
        gate.ingest(span_text)
    msg = str(info.value)
    assert "evil.csv" in msg and "outside the landing area" in msg and "not followed" in msg
    assert first_line not in msg
    assert first_line not in everything_under(gate.home)  # not in malformed.jsonl, provenance...
    assert not (gate.home / "snapshots").exists() or not any((gate.home / "snapshots").rglob("*.json"))


def test_symlinked_span_folder_out_of_the_landing_area_is_refused(gate, span_text, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "part-00000.csv").write_text(span_text)
    span_dir(gate).parent.mkdir(parents=True)
    span_dir(gate).symlink_to(outside, target_is_directory=True)
    from pipelines.ingest import ingest

    with pytest.raises(PipelineError, match="part-00000.csv: a symbolic link .* outside"):
        ingest(gate.cfg, gate.home, gate.ctx, span=BAD_SPAN, landing=gate.landing)


def test_a_fifo_is_refused_and_does_not_hang(gate, span_text):
    stage(gate.landing, BAD_SPAN, span_text)
    os.mkfifo(span_dir(gate) / "pipe.csv")
    with deadline(120), pytest.raises(PipelineError, match=r"pipe.csv: a FIFO, not a regular file"):
        gate.ingest(span_text)


def test_the_parser_refuses_a_fifo_swapped_in_after_the_check(adult_cfg, tmp_path):
    fifo = tmp_path / "late.csv"
    os.mkfifo(fifo)
    with deadline(60):
        recs = records(adult_cfg, fifo)
    assert [m["reason"] for m in malformed(recs)] == ["not a regular file (a FIFO): refused unread"]
    assert not [r for r in recs if r[0] == csv_parse.FILE]  # nothing read, so no hash recorded


def test_the_parser_does_not_follow_a_link_swapped_in_after_the_check(adult_cfg, tmp_path):
    link = tmp_path / "late.csv"
    link.symlink_to(PASSWD if PASSWD.is_file() else tmp_path)
    recs = records(adult_cfg, link)
    assert [m["reason"] for m in malformed(recs)] == [
        "a symbolic link: refused (only regular files are ingested)"]


def test_a_device_link_is_refused(gate, span_text):
    stage(gate.landing, BAD_SPAN, span_text)
    (span_dir(gate) / "zero.csv").symlink_to("/dev/zero")
    with deadline(120), pytest.raises(PipelineError, match=r"zero.csv: .*outside the landing area"):
        gate.ingest(span_text)


def test_a_folder_named_like_a_csv_is_refused_by_name(gate, span_text):
    stage(gate.landing, BAD_SPAN, span_text)
    (span_dir(gate) / "x.csv").mkdir()
    with pytest.raises(PipelineError, match=r"x.csv: a directory, not a regular file; refused"):
        gate.ingest(span_text)


def test_a_file_over_the_size_cap_is_refused_by_name(gate, span_text):
    small = gate.cfg.model_copy(update={"source": gate.cfg.source.model_copy(
        update={"max_file_bytes": 100_000})})
    with pytest.raises(PipelineError) as info:
        gate.ingest(span_text, cfg=small)
    size = len(span_text.encode())
    assert f"part-00000.csv: {size:,} bytes, over source.max_file_bytes (100,000)" in str(info.value)
    assert not (gate.home / "snapshots").exists()


# -- one pass: the bytes recorded are the bytes parsed -------------------------------------------

def test_the_parser_hashes_exactly_the_bytes_it_parses(adult_cfg, tmp_path, span_text):
    path = tmp_path / "p.csv"
    path.write_text(span_text)
    recs = records(adult_cfg, path)
    (file_rec,) = [json.loads(r[3]) for r in recs if r[0] == csv_parse.FILE]
    data = path.read_bytes()
    assert file_rec == {"uri": str(path), "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}
    assert sum(r[0] == csv_parse.ROW for r in recs) == span_text.count("\n") - 1


def test_a_file_that_grows_during_ingest_is_refused_not_misrecorded(gate, span_text, span_rows,
                                                                     monkeypatch):
    """The landing writer appends after the file was listed and before (or while) it is parsed:
    the bytes the parser read differ from those that named the snapshot, so nothing is published
    under a hash the parsed rows do not have."""
    from pipelines import ingest as ingest_mod

    real = ingest_mod.run_beam

    def append_then_parse(cfg, files, out, golden):
        with open(files[0], "a") as f:
            f.write(to_csv(span_rows[1:200]))
        return real(cfg, files, out, golden)

    monkeypatch.setattr(ingest_mod, "run_beam", append_then_parse)
    with pytest.raises(PipelineError) as info:
        gate.ingest(span_text)
    grown = len(span_text.encode()) + len(to_csv(span_rows[1:200]).encode())
    # the split plan's first pass reads the grown file (the parse pass would too): either names
    # the sizes the listing recorded and the bytes read
    assert (f"part-00000.csv: changed while it was ingested ({len(span_text.encode()):,} bytes "
            f"when listed, {grown:,} bytes ") in str(info.value)
    assert not [p for p in (gate.home / "snapshots" / "adult").iterdir()
                if not p.name.startswith(".")]


def test_provenance_records_the_parsers_size_and_hash(gate, span_text):
    snap = gate.ingest(span_text)
    prov = json.loads(Path(snap["provenance_uri"]).read_text())
    data = span_text.encode()
    (f,) = prov["files"]
    assert (f["size"], f["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert not (Path(snap["uri"]) / ".files.jsonl").exists()


# -- unreadable CSV: a malformed record with file and line, never a crash -------------------------

def test_a_stray_quote_names_the_file_and_line(gate, span_rows):
    rows = [list(r) for r in span_rows]
    rows[10][1] = '"' + rows[10][1]  # line 11 of the file (the header is line 1)
    err = gate.reject(to_csv(rows))
    line = next(x for x in str(err).splitlines() if x.startswith("- unparsed"))
    assert line.startswith("- unparsed part-00000.csv line 11: CSV record starting at line 11 "
                           "cannot be read: field larger than field limit")
    assert "an unterminated quote?" in line
    assert err.result["malformed"]["rows"] >= 1


def test_a_stray_quote_near_the_end_is_a_malformed_row(adult_cfg, tmp_path, span_rows):
    rows = [list(r) for r in span_rows]
    rows[-3][1] = '"' + rows[-3][1]
    path = tmp_path / "q.csv"
    path.write_text(to_csv(rows))
    bad = malformed(records(adult_cfg, path))
    assert len(bad) == 1 and bad[0]["line"] == len(rows) - 2
    assert "(an unterminated quote?)" in bad[0]["reason"]


def test_an_oversized_field_is_a_malformed_record(adult_cfg, tmp_path, span_rows):
    rows = [list(r) for r in span_rows[:20]]
    rows[5][1] = "x" * 200_000
    path = tmp_path / "big.csv"
    path.write_text(to_csv(rows))
    recs = records(adult_cfg, path)
    (bad,) = malformed(recs)
    assert bad["file"] == str(path) and bad["line"] == 6
    assert "field larger than field limit" in bad["reason"]
    assert sum(r[0] == csv_parse.ROW for r in recs) == 4  # the rows before it
    (file_rec,) = [json.loads(r[3]) for r in recs if r[0] == csv_parse.FILE]
    assert file_rec["size"] == path.stat().st_size  # hashed to the end all the same


def test_bad_utf8_in_the_middle_of_a_large_file_is_reported_streaming(adult_cfg, tmp_path,
                                                                      span_text):
    data = span_text.encode() * 3 + b"39,St\xe9te-gov\n" + span_text.encode().split(b"\n", 1)[1]
    path = tmp_path / "latin1.csv"
    path.write_bytes(data)
    bad = malformed(records(adult_cfg, path))
    assert len(bad) == 3  # the two repeated header lines, then the undecodable bytes
    assert bad[-1]["reason"].startswith("not UTF-8 text (invalid continuation byte) at or after")


def test_byte_order_mark_is_not_data(adult_cfg, tmp_path, span_text):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + span_text.encode())
    recs = records(adult_cfg, path)
    assert not malformed(recs)
    assert sum(r[0] == csv_parse.ROW for r in recs) == span_text.count("\n") - 1


# -- duplicates and escaping ----------------------------------------------------------------------

def test_the_same_tenth_repeated_ten_times_is_rejected(gate, span_rows):
    header, data = span_rows[0], span_rows[1:]
    tenth = data[: len(data) // 10]
    rows = [header, *tenth * 10, *data[len(data) // 10:]]
    err = gate.reject(to_csv(rows))
    line = next(x for x in str(err).splitlines() if "duplicate rows" in x)
    found = err.result["duplicates"]["rows"]
    assert line.startswith(f"- duplicate rows: {found:,} of {len(rows) - 1:,} rows (")
    assert found >= len(tenth) * 9
    assert "at most 0.5% allowed (validation.max_duplicate_fraction" in line


def test_real_duplicates_within_the_bound_are_accepted(snapshot):
    dup = snapshot["validation"]["duplicates"]
    assert dup == {"rows": 24, "fraction": 0.000737, "max_fraction": 0.005, "passed": True}


def test_script_in_a_landing_value_is_escaped_in_data_docs(gate, span_rows):
    rows = [list(r) for r in span_rows]
    for r in rows[1:30]:
        r[1] = "<script>alert(1)</script>"
    rows[31][1] = '<img src=x onerror="alert(2)">'.replace('"', "")
    err = gate.reject(to_csv(rows))
    assert "<script>alert(1)</script>" in str(err)  # the terminal line says what was found
    page = Path(err.result["report_html"]).read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text
    assert "&amp;lt;" not in page  # escaped once, not twice


def test_forced_validate_never_rewrites_a_verdict(gate, span_text):
    snap = gate.ingest(span_text)
    first = gate.validate(snap)
    from pipelines.validate import validate

    again = validate(gate.cfg, gate.home, gate.ctx, snapshot_uri=snap["uri"], force=True)
    assert again["reused"] and again["outputs"] == first["outputs"]
    assert sha256_tree(Path(first["report_json"]).parent) == first["outputs"][0]["sha256"]
