"""Monitoring spans built from real Adult rows the production model never saw (adult.test, staged
as the golden set): a clean span, a span whose ages drifted, a span whose labels of one slice are
flipped (the model's live AUC drops). Used by the monitor tests and benchmarks/bench_monitor.py."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

ROWS = 4500  # about one staged span of adult.data


def golden_rows(home: Path, name: str = "adult") -> tuple[list[str], list[list[str]]]:
    files = sorted((Path(home) / "landing" / name / "golden").glob("*.csv"))
    assert files, f"no staged golden set under {home}/landing/{name}/golden"
    with open(files[0], newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_span(home: Path, day: dt.date, header: list[str], rows: list[list[str]],
               name: str = "adult") -> Path:
    path = Path(home) / "landing" / name / day.isoformat() / "part-00000.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def clean(home: Path, day: dt.date, part: int = 0) -> Path:
    header, rows = golden_rows(home)
    return write_span(home, day, header, rows[part * ROWS:(part + 1) * ROWS])


def drifted(home: Path, day: dt.date, part: int = 1, years: int = 20) -> Path:
    """Everyone ``years`` older (capped at the contract's 90): the age distribution drifts."""
    header, rows = golden_rows(home)
    age = header.index("age")
    out = []
    for r in rows[part * ROWS:(part + 1) * ROWS]:
        r = list(r)
        r[age] = str(min(int(r[age]) + years, 90))
        out.append(r)
    return write_span(home, day, header, out)


def flipped(home: Path, day: dt.date, part: int = 2, column: str = "sex",
            value: str = "Female") -> Path:
    """The labels of one slice flipped: the inputs are unchanged, the model's AUC drops."""
    header, rows = golden_rows(home)
    col, label = header.index(column), header.index("income")
    swap = {"<=50K": ">50K", ">50K": "<=50K"}
    out = []
    for r in rows[part * ROWS:(part + 1) * ROWS]:
        r = list(r)
        if r[col] == value:
            r[label] = swap[r[label]]
        out.append(r)
    return write_span(home, day, header, out)
