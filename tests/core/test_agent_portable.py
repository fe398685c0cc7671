"""The agent runs inside images whose Python we do not choose: stdlib only, Python 3.9 syntax.

Every file in ``runtime/agent/`` may import the standard library, its own package, and ``orjson``
only where an ``ImportError`` is caught. ``ast.parse(feature_version=(3, 9))`` refuses most newer
grammar; the checks below add what it lets through, and a real Python 3.9 byte-compiles the files
when one is installed.
"""

from __future__ import annotations

import ast
import glob
import io
import os
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from helpers import ROOT

AGENT = ROOT / "runtime" / "agent"
FILES = sorted(AGENT.glob("*.py"))
OPTIONAL = {"orjson"}  # used when the image has it, imported under try/except ImportError


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(
            isinstance(k, ast.Name) and k.id in ("ImportError", "ModuleNotFoundError")
            for k in kinds
        ):
            return True
    return False


def _guarded(tree: ast.Module) -> set[int]:
    """ids of the import nodes in the body of a try whose handler catches ImportError."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and _catches_import_error(node):
            for stmt in node.body:
                found.update(
                    id(n) for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)
                )
    return found


def _imports(tree: ast.Module) -> list[tuple[ast.stmt, str]]:
    """(node, absolute top-level module) for every import; relative imports stay in the package."""
    names: list[tuple[ast.stmt, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((node, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node, node.module))
    return names


def _foreign_imports(path: Path) -> list[str]:
    tree = _tree(path)
    guarded = _guarded(tree)
    bad = []
    for node, name in _imports(tree):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or name.startswith("runtime.agent"):
            continue
        if top in OPTIONAL and id(node) in guarded:
            continue
        bad.append(f"{path.name}:{node.lineno} imports {name}")
    return bad


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_agent_imports_only_the_stdlib(path: Path) -> None:
    assert _foreign_imports(path) == []


def test_unguarded_optional_import_is_refused(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport orjson\ntry:\n    import orjson\nexcept ImportError:\n    pass\n"
    )
    assert _foreign_imports(sample) == ["sample.py:2 imports orjson"]


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )


def _annotations(tree: ast.Module) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(node.returns)
    return found


def _runtime_unions(tree: ast.Module) -> list[int]:
    """``X | Y`` that Python 3.9 would evaluate: unpostponed annotations, isinstance() types."""
    exprs = [] if _has_future_annotations(tree) else _annotations(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("isinstance", "issubclass")
            and len(node.args) == 2
        ):
            exprs.append(node.args[1])
    return sorted(
        n.lineno
        for expr in exprs
        for n in ast.walk(expr)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
    )


def _zip_strict(tree: ast.Module) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "zip"
        and any(kw.arg == "strict" for kw in node.keywords)
    ]


def _parenthesized_with(source: str) -> list[int]:
    """``with (a as b, c):`` (3.10 grammar): a ``with`` whose items open with a parenthesis that
    closes right before the colon and holds a top-level comma or ``as``."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    ]
    lines = []
    for i, tok in enumerate(tokens[:-1]):
        if not (tok.type == tokenize.NAME and tok.string == "with" and tokens[i + 1].string == "("):
            continue
        depth, j, spread = 0, i + 1, False
        while j < len(tokens):
            text = tokens[j].string
            depth += text in "([{" and tokens[j].type == tokenize.OP
            depth -= text in ")]}" and tokens[j].type == tokenize.OP
            if depth == 1 and (text == "," or (tokens[j].type == tokenize.NAME and text == "as")):
                spread = True
            if depth == 0:
                break
            j += 1
        if spread and j + 1 < len(tokens) and tokens[j + 1].string == ":":
            lines.append(tok.start[0])
    return lines


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_agent_parses_as_python39(path: Path) -> None:
    source = path.read_text()
    tree = _tree(path)  # refuses match statements, except*, 3.12 type syntax...
    assert not [n for n in ast.walk(tree) if type(n).__name__ in ("Match", "TryStar", "TypeAlias")]
    assert _runtime_unions(tree) == [], "X | Y evaluated at runtime"
    assert _zip_strict(tree) == [], "zip(strict=...) is Python 3.10"
    assert _parenthesized_with(source) == [], "parenthesized context managers are Python 3.10"


def test_the_checks_catch_newer_constructs() -> None:
    newer = (
        "import os\n"
        "def f(x: int | None) -> None:\n"
        "    with (open(x) as a, open(x) as b):\n"
        "        pass\n"
        "    isinstance(x, int | str)\n"
        "    zip(a, b, strict=True)\n"
    )
    tree = ast.parse(newer)
    assert _runtime_unions(tree) == [2, 5]
    assert _runtime_unions(ast.parse("from __future__ import annotations\n" + newer)) == [6]
    assert _zip_strict(tree) == [6]
    assert _parenthesized_with(newer) == [3]
    assert _parenthesized_with("with (a):\n    pass\nwith (a, b) as c:\n    pass\n") == []
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 9))


def _python39() -> str | None:
    candidates = [shutil.which("python3.9"), *glob.glob("/root/.pyenv/versions/3.9*/bin/python3.9")]
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "--version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0 and probe.stdout.startswith("Python 3.9"):
            return candidate
    return None


def test_agent_byte_compiles_on_python39(tmp_path: Path) -> None:
    python = _python39()
    if python is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    script = (
        "import py_compile, sys\n"
        "for path in sys.argv[1:]:\n"
        "    py_compile.compile(path, cfile=path + 'c', doraise=True)\n"
    )
    copies = []
    for path in FILES:  # compiled in a copy: no 3.9 .pyc beside the sources
        copy = tmp_path / path.name
        copy.write_text(path.read_text())
        copies.append(str(copy))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [python, "-c", script, *copies], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
