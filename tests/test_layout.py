"""The direction of imports (docs/design.md, "Layout"): cli may use daemon and engine, daemon may
use engine, engine uses neither; cluster (the store client, multi-host) uses only the shared
modules and is used by daemon and cli, never by engine or units/; the shared modules at the top
of supervisor/ use none of the four; units/ (Synapse knowledge) uses only those shared modules; nothing imports cli but the
`synsup` command itself (synsup/__main__.py)."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = ("engine", "daemon", "cli", "cluster")
ALLOWED = {  # layer of the importing module -> layers it may import
    "shared": {"shared"},
    "engine": {"shared", "engine"},
    "cluster": {"shared", "cluster"},
    "daemon": {"shared", "engine", "daemon", "cluster"},
    "cli": {"shared", "engine", "daemon", "cluster", "cli"},
    "units": {"shared", "units"},
}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(["synsup", *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]]))


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["synsup", "units"]:
        return "units"
    if parts[:2] != ["synsup", "supervisor"]:
        return None
    return parts[2] if len(parts) > 3 and parts[2] in LAYERS else "shared"


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    """Every module a file imports, relative imports resolved; `from pkg import mod` counts mod."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return found


def sources() -> list[pathlib.Path]:
    return sorted(p for d in ("supervisor", "units") for p in (ROOT / d).rglob("*.py"))


def wrong_way(path: pathlib.Path) -> list[str]:
    own = layer_of(module_name(path))
    assert own is not None
    bad = []
    for line, target in imported_modules(path):
        # `from ..daemon import x` names a module in daemon; `from ..spec import X` a name in spec
        layer = layer_of(target if target.split(".")[-1][:1].islower() else target.rsplit(".", 1)[0])
        if layer is not None and layer not in ALLOWED[own]:
            bad.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {target} ({layer})")
    return bad


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path: pathlib.Path) -> None:
    assert wrong_way(path) == []


def test_the_rule_catches_a_wrong_way_import(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walker sees relative and absolute imports across layers (else the test above proves nothing)."""
    engine = ROOT / "supervisor" / "engine" / "unit.py"
    assert any(layer_of(t) == "shared" for _, t in imported_modules(engine))
    fake = ROOT / "supervisor" / "engine" / "_probe_wrong_way.py"
    fake.write_text("from ..daemon import daemon\nfrom synsup.supervisor.cli.main import main\n")
    try:
        assert len(wrong_way(fake)) == 2
    finally:
        fake.unlink()


def test_cluster_is_a_layer_of_its_own() -> None:
    """The store client is no shared module: units/ and the engine may not import it."""
    gateway = "synsup.supervisor.cluster.etcd_gateway"
    assert layer_of(gateway) == "cluster" and layer_of("synsup.supervisor.cluster_config") == "shared"
    assert "cluster" not in ALLOWED["units"] | ALLOWED["engine"] | ALLOWED["shared"]


def test_no_two_test_files_share_a_name() -> None:
    """Tests read as a map (issue 17): a file name says which module or concern it pins, once."""
    by_name: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        by_name.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert [paths for paths in by_name.values() if len(paths) > 1] == []


def _stem(path: pathlib.Path) -> str:
    """A module's name as a newcomer reads it: plurals and singulars alike (tallies ~ tally)."""
    words = path.stem.split("_")
    return "_".join(w[:-3] + "y" if w.endswith("ies") else w[:-1] if w.endswith("s") else w for w in words)


def test_no_two_modules_differ_only_by_a_plural() -> None:
    """`upgrade.py` beside `upgrades.py`, `unit_state.py` beside `unit_states.py`: one name a
    newcomer confuses; each module is named after what it holds (issue 17)."""
    seen: dict[str, list[str]] = {}
    for path in sources():
        if path.name != "__init__.py":
            seen.setdefault(_stem(path), []).append(str(path.relative_to(ROOT)))
    assert [paths for paths in seen.values() if len(paths) > 1] == []


NARROW = ("handlers.py", "reloads.py", "upgrade_operation.py", "reexec.py")


@pytest.mark.parametrize("name", NARROW)
def test_daemon_parts_see_a_narrow_view(name: str) -> None:
    """Requests, Reloads, Upgrades and reexec see the daemon through a typing.Protocol of what
    each uses (as metrics.py's DaemonView), never the whole Daemon class (issue 17)."""
    path = ROOT / "supervisor" / "daemon" / name
    assert [t for _, t in imported_modules(path) if t.endswith(".daemon.Daemon")] == []
    assert "(Protocol)" in path.read_text()


def _own_private_names(tree: ast.AST) -> set[str]:
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")
            and isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")} | \
           {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_nobody_reads_a_private_field_of_another_class() -> None:
    """`other._field` only where the module defines `_field` itself (a class's own, e.g. in a
    classmethod); the standard library's argparse internals and os._exit excepted (issue 17)."""
    found = []
    for path in sources():
        tree = ast.parse(path.read_text(), str(path))
        own = _own_private_names(tree) | {"_actions", "_SubParsersAction", "_exit"}
        found += [f"{path.relative_to(ROOT)}:{n.lineno}: .{n.attr}" for n in ast.walk(tree)
                  if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
                  and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")) and n.attr not in own]
    assert found == []
