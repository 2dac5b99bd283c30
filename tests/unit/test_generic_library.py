"""Use cases are data: no column name of any configs/*.yaml appears in pipelines/ or dags/ code.

A column name (3 characters or more) written as a string literal in library code means a step
knows one use case; the test names the file, line and column so it can be moved to the config.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pipelines.config import REPO_ROOT, load_config

# Literals that equal a column name by coincidence, with why they are not a use case's column.
NOT_COLUMNS: dict[tuple[str, str], str] = {}
CODE = [*sorted((REPO_ROOT / "pipelines").rglob("*.py")), *sorted((REPO_ROOT / "dags").glob("*.py"))]


def column_names() -> dict[str, str]:
    names = {}
    for path in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        for col in load_config(path).columns:
            if len(col.name) >= 3:
                names[col.name] = path.name
    return names


def string_literals(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_library_code_names_no_column_of_any_use_case():
    names = column_names()
    assert len({cfg for cfg in names.values()}) >= 4, "expected the four shipped use cases"
    leaks = [f"{path.relative_to(REPO_ROOT)}:{line}: {value!r} is a column of {names[value]}"
             for path in CODE for line, value in string_literals(path)
             if value in names and (str(path.relative_to(REPO_ROOT)), value) not in NOT_COLUMNS]
    assert not leaks, "\n".join(leaks)


def test_the_check_finds_a_planted_leak(tmp_path):
    planted = tmp_path / "step.py"
    planted.write_text('def f(batch):\n    return batch["hours_per_week"]\n')
    assert (2, "hours_per_week") in list(string_literals(planted))
    assert "hours_per_week" in column_names()
