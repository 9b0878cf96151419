"""Every loop in the tests that waits (sleeps or awaits) has a deadline (issue 17): a condition
that never comes fails the test with a message instead of hanging the suite. The fake Synapse
(tests/fake) is a program, not a test, and loops as long as it runs."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent
BOUNDED = re.compile(r"deadline|monotonic|timeout|give_up|wait_for|until|is_set\(\)|_stop")


def waits(loop: ast.While) -> bool:
    for node in ast.walk(loop):
        if isinstance(node, ast.Await):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sleep":
            return True
    return False


def unbounded_loops(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    source = path.read_text()
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    found = []
    for loop in (n for n in ast.walk(tree) if isinstance(n, ast.While) and waits(n)):
        around = [f for f in functions if f.lineno <= loop.lineno <= (f.end_lineno or f.lineno)]
        text = ast.get_source_segment(source, around[-1] if around else loop) or ""
        if not BOUNDED.search(text):
            found.append(f"{path.relative_to(root)}:{loop.lineno}")
    return found


def test_every_waiting_loop_has_a_deadline() -> None:
    paths = sorted(p for p in ROOT.rglob("*.py") if "fake" not in p.relative_to(ROOT).parts)
    assert [loop for path in paths for loop in unbounded_loops(path)] == []


def test_the_check_sees_a_loop_without_a_deadline(tmp_path: pathlib.Path) -> None:
    """(else the test above proves nothing)"""
    sample = tmp_path / "sample.py"
    sample.write_text("async def f(store):\n    while not await store.get('k'):\n        await asyncio.sleep(0.01)\n")
    bounded = tmp_path / "bounded.py"
    bounded.write_text("def f(c):\n    deadline = time.monotonic() + 5\n    while not c():\n"
                              "        assert time.monotonic() < deadline\n        time.sleep(0.01)\n")
    assert unbounded_loops(sample, tmp_path) == ["sample.py:2"]
    assert unbounded_loops(bounded, tmp_path) == []
