"""The package layout as an import graph, read from the source with ``ast`` (nothing imported).

The wings stay where the README's map puts them:

- ``runtime/apigw/`` knows no web server and no service: no aiohttp, nothing from
  ``runtime.service``;
- ``runtime/configfile.py`` is read by the CLI and the service alike, so it imports neither;
- ``runtime/service/`` serves HTTP: nothing from ``runtime.harness`` or ``runtime.cli``;
- ``runtime/agent/`` runs inside any image with a Python: the standard library and itself only
  (an import tried under ``except ImportError``, with a fallback, is allowed);
- ``runtime/batch/`` is AWS Batch, below the service;
- no two of runtime's modules import each other, directly or round a longer circle, when they
  are imported (``if TYPE_CHECKING:`` blocks and imports inside functions do not count there).

The boundary rules count every import, lazy or type-only ones included: either is still a
dependency of the wing.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT

RUNTIME = ROOT / "runtime"
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})


@dataclass(frozen=True)
class Import:
    """One name an import statement brings in, resolved to an absolute dotted name."""

    #: the importer's file, from the directory that holds its top package
    file: str
    importer: str
    target: str
    line: int
    #: executed when the importer is imported: not in a function, not under TYPE_CHECKING
    run_time: bool
    #: tried under ``except ImportError``, so the importer works without it
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


def module_name(path: Path, root: Path) -> str:
    """``runtime/apigw/routes.py`` → ``runtime.apigw.routes``; a package is its ``__init__``."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path) -> dict[str, Path]:
    """Every module under ``package`` by dotted name (names start at the package itself)."""
    root = package.parent
    return {module_name(path, root): path for path in sorted(package.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _catches_import_error(node: ast.Try) -> bool:
    names: list[ast.expr] = []
    for handler in node.handlers:
        kinds = handler.type
        names.extend(kinds.elts if isinstance(kinds, ast.Tuple) else [kinds] if kinds else [])
    return any(isinstance(n, ast.Name) and n.id in _IMPORT_ERRORS for n in names)


def _statements(
    node: ast.AST, *, run_time: bool = True, optional: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement under ``node``, whether it runs when the module is imported, and
    whether it is optional (tried, with ``except ImportError`` to fall back on)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, run_time, optional
        return
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        run_time = False
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.body:
            yield from _statements(child, run_time=False, optional=optional)
        for child in node.orelse:
            yield from _statements(child, run_time=run_time, optional=optional)
        return
    if isinstance(node, ast.Try) and _catches_import_error(node):
        for tried in node.body:
            yield from _statements(tried, run_time=run_time, optional=True)
        rest: list[ast.AST] = [*node.handlers, *node.orelse, *node.finalbody]
        for other in rest:
            yield from _statements(other, run_time=run_time, optional=optional)
        return
    for inner in ast.iter_child_nodes(node):
        yield from _statements(inner, run_time=run_time, optional=optional)


def _base(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imports(path: Path, importer: str, known: Iterable[str] = ()) -> list[Import]:
    """The imports of the module ``importer`` at ``path``.

    ``from pkg import name`` is an import of ``pkg.name`` when that is one of the ``known``
    modules, else of ``pkg``; the parents of a dotted name are not counted as imports of their
    own (every module would otherwise import ``runtime``, and the ``__init__`` imports it).
    """
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    file = path.relative_to(path.parents[importer.count(".") + is_package]).as_posix()
    found: list[Import] = []
    for node, run_time, optional in _statements(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _base(importer, is_package, node)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        found.extend(
            Import(file, importer, t, node.lineno, run_time, optional)
            for t in dict.fromkeys(targets)
        )
    return found


def graph_imports(package: Path) -> list[Import]:
    """Every import of every module under ``package``."""
    found = modules(package)
    return [imp for name, path in found.items() for imp in imports(path, name, found)]


def within(name: str, *prefixes: str) -> bool:
    """Whether ``name`` is one of ``prefixes`` or inside one of them."""
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


def offenders(found: Iterable[Import], bad: Callable[[str], bool]) -> list[str]:
    return [str(imp) for imp in found if bad(imp.target)]


def cycles(found: Iterable[Import]) -> list[list[str]]:
    """The circles among the importers, at run time: each a sorted list of modules (the
    strongly connected components of two or more, or a module importing itself)."""
    found = [imp for imp in found if imp.run_time]
    names = {imp.importer for imp in found}
    edges: dict[str, set[str]] = {name: set() for name in names}
    for imp in found:
        if imp.target in names:
            edges[imp.importer].add(imp.target)
    components = _Components(edges).all()
    return sorted(c for c in components if len(c) > 1 or c[0] in edges[c[0]])


class _Components:
    """Tarjan's strongly connected components of a directed graph."""

    def __init__(self, edges: dict[str, set[str]]) -> None:
        self.edges = edges
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.on_stack: set[str] = set()
        self.found: list[list[str]] = []

    def all(self) -> list[list[str]]:
        for name in sorted(self.edges):
            if name not in self.index:
                self._visit(name)
        return self.found

    def _visit(self, name: str) -> None:
        self.index[name] = self.low[name] = len(self.index)
        self.stack.append(name)
        self.on_stack.add(name)
        for nxt in sorted(self.edges[name]):
            if nxt not in self.index:
                self._visit(nxt)
                self.low[name] = min(self.low[name], self.low[nxt])
            elif nxt in self.on_stack:
                self.low[name] = min(self.low[name], self.index[nxt])
        if self.low[name] == self.index[name]:
            self.found.append(sorted(self._pop_until(name)))

    def _pop_until(self, name: str) -> Iterator[str]:
        while True:
            top = self.stack.pop()
            self.on_stack.discard(top)
            yield top
            if top == name:
                return


def shortest_circle(circle: list[str], found: Iterable[Import]) -> list[Import]:
    """The imports of one shortest way round ``circle`` from its first module back to it."""
    members = set(circle)
    first: dict[tuple[str, str], Import] = {}
    for imp in found:
        if imp.run_time and imp.importer in members and imp.target in members:
            first.setdefault((imp.importer, imp.target), imp)
    start = circle[0]
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        step = []
        for name in frontier:
            for (importer, target), imp in sorted(first.items()):
                if importer != name:
                    continue
                if target == start:
                    return [*paths[name], imp]
                if target not in paths:
                    paths[target] = [*paths[name], imp]
                    step.append(target)
        frontier = step
    raise AssertionError(f"{circle} is not a circle")


def _describe(circle: list[str], found: Iterable[Import]) -> str:
    way = "\n    ".join(str(imp) for imp in shortest_circle(circle, found))
    return f"{len(circle)} modules: {', '.join(circle)}\n  for one, round:\n    {way}"


@pytest.fixture(scope="module")
def runtime_imports() -> list[Import]:
    return graph_imports(RUNTIME)


def _under(found: list[Import], package: str) -> list[Import]:
    return [imp for imp in found if within(imp.importer, package)]


# -- the rules, on runtime/ --------------------------------------------------------------------


def test_apigw_imports_no_aiohttp_and_no_service(runtime_imports: list[Import]) -> None:
    found = _under(runtime_imports, "runtime.apigw")
    assert found, "runtime/apigw/ has no imports to check: has the package moved?"
    bad = offenders(found, lambda target: within(target, "aiohttp", "runtime.service"))
    assert not bad, "runtime/apigw/ must stay free of aiohttp and the service:\n" + "\n".join(bad)


def test_configfile_imports_nothing_from_the_service(runtime_imports: list[Import]) -> None:
    found = [imp for imp in runtime_imports if imp.importer == "runtime.configfile"]
    assert found, "runtime/configfile.py has no imports to check: has it moved?"
    bad = offenders(found, lambda target: within(target, "runtime.service"))
    assert not bad, "runtime/configfile.py must not import runtime.service:\n" + "\n".join(bad)


def test_service_imports_neither_harness_nor_cli(runtime_imports: list[Import]) -> None:
    found = _under(runtime_imports, "runtime.service")
    bad = offenders(found, lambda target: within(target, "runtime.harness", "runtime.cli"))
    assert not bad, "runtime/service/ must not import the harness or the CLI:\n" + "\n".join(bad)


def test_agent_imports_only_the_standard_library(runtime_imports: list[Import]) -> None:
    # an optional import (orjson, when the image has it) falls back on the standard library
    found = [imp for imp in _under(runtime_imports, "runtime.agent") if not imp.optional]
    bad = offenders(
        found,
        lambda target: (
            not within(target, "runtime.agent")
            and target.partition(".")[0] not in sys.stdlib_module_names
        ),
    )
    assert not bad, "runtime/agent/ may import only the stdlib and itself:\n" + "\n".join(bad)


def test_batch_imports_nothing_from_the_service(runtime_imports: list[Import]) -> None:
    found = _under(runtime_imports, "runtime.batch")
    bad = offenders(found, lambda target: within(target, "runtime.service"))
    assert not bad, "runtime/batch/ must not import runtime.service:\n" + "\n".join(bad)


def test_no_import_cycle_among_runtime_modules(runtime_imports: list[Import]) -> None:
    circles = cycles(runtime_imports)
    assert not circles, "import cycles at module level:\n" + "\n".join(
        _describe(circle, runtime_imports) for circle in circles
    )


# -- the checker itself, on a tiny tree ---------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_relative_imports_resolve_to_modules(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import x\n",
            "pkg/a.py": "from . import b\nfrom .sub import thing\nx = 1\n",
            "pkg/b.py": "import os.path\n",
            "pkg/sub/__init__.py": "from . import c\nfrom .c import y\nfrom ..a import x\n",
            "pkg/sub/c.py": "import json\nfrom aiohttp import web\ny = 2\n",
        },
    )
    targets = {(imp.importer, imp.target) for imp in graph_imports(pkg)}
    assert targets == {
        ("pkg", "pkg.a"),
        ("pkg.a", "pkg.b"),
        ("pkg.a", "pkg.sub"),
        ("pkg.b", "os.path"),
        ("pkg.sub", "pkg.sub.c"),
        ("pkg.sub", "pkg.a"),
        ("pkg.sub.c", "json"),
        ("pkg.sub.c", "aiohttp"),
    }


def test_an_import_tried_under_except_import_error_is_optional(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "pkg/__init__.py": (
                "try:\n    import orjson\nexcept (ValueError, ImportError):\n    import json\n"
                "try:\n    import ujson\nexcept ValueError:\n    pass\n"
            ),
        },
    )
    optional = {imp.target: imp.optional for imp in graph_imports(pkg)}
    assert optional == {"orjson": True, "json": False, "ujson": False}


def test_a_forbidden_import_is_named_with_its_line(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/pure.py": "import json\n\n\ndef f():\n    from aiohttp import web\n",
        },
    )
    bad = offenders(graph_imports(pkg), lambda target: within(target, "aiohttp"))
    assert bad == ["pkg/pure.py:5 imports aiohttp"]


def test_a_cycle_is_found_and_lazy_imports_break_none(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\n",
            "pkg/b.py": "from .c import x\n",
            "pkg/c.py": "import pkg.a\nx = 1\n",
            "pkg/d.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import e\n"
            ),
            "pkg/e.py": "def f():\n    from . import d\n",
            "pkg/f.py": "from . import f\n",
        },
    )
    found = graph_imports(pkg)
    assert cycles(found) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.f"]]
    way = shortest_circle(["pkg.a", "pkg.b", "pkg.c"], found)
    assert [str(imp) for imp in way] == [
        "pkg/a.py:1 imports pkg.b",
        "pkg/b.py:1 imports pkg.c",
        "pkg/c.py:1 imports pkg.a",
    ]


def test_the_else_of_type_checking_runs(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": (
                "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    from . import b\n"
            ),
            "pkg/b.py": "class K:\n    from . import a\n",
        },
    )
    assert cycles(graph_imports(pkg)) == [["pkg.a", "pkg.b"]]
