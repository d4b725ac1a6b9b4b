"""The shape of the package: one home per concern, no cycles, modules a reader can hold.

These checks read the source (no imports run), so they fail with the file and line
that break the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "repwidgets"
MAX_LINES = 800


def source_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # imports under `if TYPE_CHECKING:` never run
        nodes = [n for n in nodes if not isinstance(n, ast.If)]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.startswith("repwidgets")]


def in_type_checking_block(path: Path) -> set[int]:
    """Line numbers of imports inside ``if TYPE_CHECKING:`` (they never run)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    lines.add(child.lineno)
    return lines


def runtime_imports(path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    skip = in_type_checking_block(path)
    return [(name, line) for name, line in imports(path, top_level_only) if line not in skip]


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in source_files()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"


def test_no_module_imports_one_that_imports_it_back():
    """Counted over every import, also those inside functions (a lazy import is still a
    dependency a reader has to follow)."""
    modules = {module_name(p): p for p in source_files()}

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {
        name: {owner(dep) for dep, _ in runtime_imports(path)} - {None, name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its own modules is not a cycle of concerns.
    for name in graph:
        graph[name] = {d for d in graph[name] if not name.startswith(d + ".")}
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    cycles.append(" -> ".join([*path, start]))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles))[:10])


LAYER_RULES = [
    ("repwidgets.engines", ("repwidgets.widgets", "repwidgets.views", "repwidgets.demo")),
    ("repwidgets.widgets", ("repwidgets.engines", "repwidgets.views", "repwidgets.demo")),
    ("repwidgets.views", ("repwidgets.demo",)),
    ("repwidgets.session", ("repwidgets.engines", "repwidgets.widgets", "repwidgets.views")),
    # the explorer composes engines, views, widgets and the session
    ("repwidgets.views.explorer", ("repwidgets.demo", "repwidgets.cli", "repwidgets.report")),
]


@pytest.mark.parametrize(("layer", "forbidden"), LAYER_RULES, ids=[r[0] for r in LAYER_RULES])
def test_layers_import_only_what_sits_below_them(layer, forbidden):
    broken = [
        f"{p.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for p in source_files()
        if module_name(p) == layer or module_name(p).startswith(layer + ".")
        for name, line in runtime_imports(p)
        if name.startswith(forbidden)
    ]
    assert not broken, "\n".join(broken)


def test_only_the_package_and_the_notebook_extension_open_the_explorer():
    explorer = "repwidgets.views.explorer"
    openers = ("repwidgets", "repwidgets.magics")
    broken = [
        f"{p.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for p in source_files()
        if not module_name(p).startswith(explorer) and module_name(p) not in openers
        for name, line in runtime_imports(p)
        if name.startswith(explorer)
    ]
    assert not broken, "\n".join(broken)


def calls_to(attribute: str) -> list[str]:
    found = []
    for p in source_files():
        for node in ast.walk(ast.parse(p.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == attribute
            ):
                found.append(f"{p.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


@pytest.mark.parametrize(
    ("attribute", "home"),
    [
        ("register_forward_hook", "repwidgets/hooks.py"),
        ("register_forward_pre_hook", "repwidgets/hooks.py"),
        ("replace", "repwidgets/atomic.py"),  # os.replace: the one atomic write
    ],
)
def test_one_home_for_hooks_and_atomic_writes(attribute, home):
    found = calls_to(attribute)
    if attribute == "replace":  # str.replace and dataclasses.replace are not file renames
        found = [f for f in found if _is_os_replace(f)]
    outside = [f for f in found if not f.startswith(home + ":")]
    assert not outside, f"{attribute} outside {home}: {outside}"


def _is_os_replace(location: str) -> bool:
    path, line = location.rsplit(":", 1)
    text = (PACKAGE.parent / path).read_text().splitlines()[int(line) - 1]
    return "os.replace(" in text
