"""docs/design.md's behaviour table stays true: every file it names exists and defines every
function or class named after it (`Class.method` as a method of that class)."""

from __future__ import annotations

import ast
import fnmatch
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE_HEADING = "## Where behaviour lives"


def table_rows() -> list[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| behaviour")]


def references(row: str) -> list[tuple[str, str]]:
    """(file, name) for each name after a file in the row's 'where' cell."""
    where = row.rstrip(" |").rsplit(" | ", 1)[1]
    found, current = [], ""
    for token in re.findall(r"`([^`]+)`", where):
        if token.endswith(".py"):
            current = token
            found.append((current, ""))
        else:
            found.append((current, token))
    return found


def defined_names(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{item.name}" for item in node.body
                      if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return names


def test_the_table_has_about_twenty_rows_each_naming_a_file() -> None:
    rows = table_rows()
    assert len(rows) >= 20
    assert all(references(row) and references(row)[0][1] == "" for row in rows), "each row starts with a file"


def test_every_file_and_name_the_table_gives_exists() -> None:
    missing = []
    for row in table_rows():
        for file, name in references(row):
            path = ROOT / file
            if not path.is_file():
                missing.append(file)
            elif name and name not in defined_names(path):
                missing.append(f"{file} {name}")
    assert missing == []


def layout_tree() -> str:
    text = (ROOT / "docs" / "design.md").read_text()
    return text.split("## Layout", 1)[1].split("```\n", 1)[1].split("```", 1)[0]


def test_the_layout_tree_names_every_module() -> None:
    """The Layout tree is the map of every module (a pattern such as rules_*.py counts for all it matches)."""
    named = set(re.findall(r"[a-z_*]+\.py", layout_tree()))
    modules = sorted(p for d in ("supervisor", "units") for p in (ROOT / d).rglob("*.py") if p.name != "__init__.py")
    unnamed = [str(p.relative_to(ROOT)) for p in modules if not any(fnmatch.fnmatch(p.name, n) for n in named)]
    assert unnamed == [], "add a line for each to docs/design.md's Layout tree"


def test_every_path_the_document_names_exists() -> None:
    """Paths in backticks (from the repository root, or from supervisor/ or units/) exist."""
    text = (ROOT / "docs" / "design.md").read_text()
    paths = {p for p in re.findall(r"`([\w./-]+\.(?:py|sh|md|c))`", text) if "/" in p}
    bases = (ROOT, ROOT / "supervisor", ROOT / "units")
    missing = sorted(p for p in paths if not any((base / p).exists() for base in bases))
    assert missing == []
