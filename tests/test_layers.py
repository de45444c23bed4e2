"""The layering rules of docs/design (DESIGN.md "Layers"), checked by reading the imports.

Arrows point down only: server -> carriers -> core -> backplanes -> protocol, and the Python
client -> protocol, diagnose -> protocol. Every import counts, the ones under
``TYPE_CHECKING`` and inside functions included; the pure core imports only the standard
library; the core never names a transport; and no module imports another that (directly or
not) imports it back.

The checker is a plain function over sources, so the tests at the bottom also prove that it
catches each kind of breakage in a made-up tree.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "transports"

RANK = {
    "protocol": 0,
    "backplanes": 1,
    "client": 1,
    "core": 2,
    "diagnose": 2,
    "carriers": 3,
    "server": 4,
    "bench": 5,
}
"""A module may import library modules of a lower rank (and its own layer), never higher."""

ALLOWED_LIBRARY = {
    "protocol": {"protocol"},
    "backplanes": {"protocol", "backplanes"},
    "client": {"protocol", "client"},
    "diagnose": {"protocol", "diagnose"},
    "core": {"protocol", "backplanes", "core"},
    "carriers": {"protocol", "backplanes", "core", "carriers"},
}
"""Which library layers each layer may import (layers not listed: any lower rank)."""

ALLOWED_THIRD_PARTY = {
    "protocol": set(),
    "backplanes": {"redis"},
    "core": set(),
    "carriers": {"sse_starlette"},
    "client": {"aiohttp"},
    "diagnose": {"aiohttp"},
}
"""Packages outside the standard library each layer may import (not listed: any)."""

WEB_FRAMEWORKS = {"quart", "hypercorn", "starlette", "sse_starlette", "werkzeug", "flask"}
TRANSPORT_WORDS = {"websocket", "sse", "longpoll"}
PUBLIC_NAMES = {"harden_websocket_deflate"}
"""Identifiers of the public API that contain a transport's name but carry no behaviour in the
core (a setting the core stores and the server reads)."""


@dataclass(frozen=True)
class Violation:
    module: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.module}: {self.rule}: {self.detail}"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(
    tree: ast.Module, module: str, is_package: bool, modules: Iterable[str]
) -> Iterable[tuple[str, bool]]:
    """Every module this one imports, absolute, and whether the import is at module level
    (``TYPE_CHECKING`` blocks count as module level). ``from package import name`` counts as
    importing ``package.name`` when that is a module, else ``package``."""
    known = set(modules)
    top_level = {id(node) for node in tree.body}
    for statement in tree.body:  # imports nested in ``if TYPE_CHECKING:`` / ``try:`` at top level
        if isinstance(statement, ast.If | ast.Try):
            top_level.update(id(child) for child in ast.walk(statement))
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            for found in submodules or [target]:
                yield found, id(node) in top_level


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "transports" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else None


def _code_words(tree: ast.Module) -> Iterable[tuple[int, str]]:
    """Words in identifiers and string constants, docstrings left out."""
    docstrings = {  # docstrings, and the attribute docstrings under fields
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    for node in ast.walk(tree):
        texts: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                texts.append(node.value)
        elif isinstance(node, ast.Name):
            texts.append(node.id)
        elif isinstance(node, ast.Attribute):
            texts.append(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            texts.append(node.name)
        elif isinstance(node, ast.arg):
            texts.append(node.arg)
        for text in texts:
            if text in PUBLIC_NAMES:
                continue
            for word in re.split(r"[^A-Za-z0-9]+|_", text):
                yield getattr(node, "lineno", 0), word.lower()


def check(sources: Mapping[str, tuple[str, bool]]) -> list[Violation]:
    """Check ``{module: (source, is_package)}`` against every rule; return what breaks."""
    stdlib = sys.stdlib_module_names
    graph: dict[str, set[str]] = {}
    violations: list[Violation] = []
    for module, (source, is_package) in sources.items():
        tree = ast.parse(source)
        layer = _layer(module)
        graph[module] = set()
        for target, top in _imports(tree, module, is_package, sources):
            root = target.split(".")[0]
            if root == "transports":
                if target not in sources:
                    continue  # a name, not a module
                if top:
                    graph[module].add(target)
                if layer is None:
                    continue
                other = _layer(target)
                if other is None:
                    if layer != "bench":  # the harness may use the public facade
                        violations.append(Violation(module, "imports a public re-export", target))
                    continue
                allowed = ALLOWED_LIBRARY.get(layer)
                if allowed is not None and other not in allowed:
                    violations.append(Violation(module, f"{layer} imports {other}", target))
                elif allowed is None and RANK[other] > RANK[layer]:
                    violations.append(Violation(module, f"{layer} imports upward", target))
            elif layer is not None and root not in stdlib and root != "__future__":
                third = ALLOWED_THIRD_PARTY.get(layer)
                if third is not None and root not in third:
                    violations.append(Violation(module, f"{layer} imports {root}", target))
                if layer in ("protocol", "backplanes", "core") and root in WEB_FRAMEWORKS:
                    violations.append(Violation(module, "a web framework below carriers", root))
        if layer == "core":
            for line, word in _code_words(tree):
                if word in TRANSPORT_WORDS:
                    violations.append(
                        Violation(module, "the core names a transport", f"{word!r} line {line}")
                    )
    violations += _cycles(graph)
    return violations


def _cycles(graph: Mapping[str, set[str]]) -> list[Violation]:
    """Module-level import cycles (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[Violation] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(Violation(min(component), "import cycle", " -> ".join(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def library_sources(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    """Every module of the package: ``{name: (source, is_package)}``."""
    return {
        _module_name(path, root): (path.read_text(), path.name == "__init__.py")
        for path in sorted(root.rglob("*.py"))
    }


def test_the_library_keeps_its_layers() -> None:
    """Nothing imports upward (TYPE_CHECKING included), the pure core imports only the
    standard library, the core neither loads a web framework nor names a transport, and no
    module is part of an import cycle."""
    violations = check(library_sources())
    assert not violations, "\n".join(map(str, violations))


def test_every_layer_exists() -> None:
    """The layers the rules speak of are all there (a rename cannot make the rules vacuous)."""
    layers = {_layer(name) for name in library_sources()}
    assert set(RANK) <= layers


# --- the checker catches each kind of breakage --------------------------------------------

GOOD = {
    "transports": ("", True),
    "transports.protocol": ("", True),
    "transports.protocol.frames": ("import json\n", False),
    "transports.backplanes": ("from ..protocol.frames import X\n", True),
    "transports.core": ("", True),
    "transports.exceptions": ("from .protocol.frames import E\n", False),
    "transports.core.engine": ("from ..backplanes import B\nfrom .hub import Hub\n", False),
    "transports.core.hub": ("from ..protocol import frames\n", False),
    "transports.carriers": ("from ..core.engine import Engine\n", True),
    "transports.server": ("import quart\nfrom ..carriers import C\n", True),
    "transports.client": ("import aiohttp\nfrom ..protocol.frames import F\n", True),
    "transports.diagnose": ("import aiohttp\nfrom ..protocol.frames import F\n", True),
    "transports.bench": ("", True),
}


def _with(module: str, source: str) -> dict[str, tuple[str, bool]]:
    tree = dict(GOOD)
    tree[module] = (source, GOOD.get(module, ("", False))[1])
    return tree


def test_checker_accepts_a_good_tree() -> None:
    """The made-up tree the breakages below start from passes."""
    assert check(GOOD) == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("transports.protocol.frames", "import sse_starlette\n", "protocol imports sse_starlette"),
        ("transports.protocol.frames", "from ..core import engine\n", "protocol imports core"),
        ("transports.core.hub", "import quart\n", "a web framework below carriers"),
        (
            "transports.core.hub",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..carriers import C\n",
            "core imports carriers",
        ),
        ("transports.core.hub", "def f():\n    from ..server import x\n", "core imports server"),
        ("transports.core.hub", "NAME = 'longpoll'\n", "the core names a transport"),
        ("transports.core.hub", "def on_websocket(): pass\n", "the core names a transport"),
        ("transports.client", "from ..core.engine import Engine\n", "client imports core"),
        ("transports.diagnose", "from ..server import edge\n", "diagnose imports server"),
        ("transports.diagnose", "import quart\n", "diagnose imports quart"),
        ("transports.carriers", "from ..server import edge\n", "carriers imports server"),
        ("transports.core.hub", "from .engine import Engine\n", "import cycle"),
        ("transports.core.hub", "from ..exceptions import E\n", "imports a public re-export"),
    ],
)
def test_checker_catches(module: str, source: str, rule: str) -> None:
    """Each kind of breakage is reported under its rule."""
    found = check(_with(module, source))
    assert any(v.rule == rule for v in found), found


def test_docstrings_may_name_transports() -> None:
    """Prose may say "WebSocket"; code may not."""
    assert check(_with("transports.core.hub", '"""Over WebSocket or SSE."""\n')) == []


def test_every_layer_is_a_regular_package() -> None:
    """Every folder of Python modules has an ``__init__.py``: without one Python still imports it
    (as a namespace package), but the API docs and some tools do not find it."""
    folders = {path.parent for path in PACKAGE.rglob("*.py")}
    missing = sorted(
        str(f.relative_to(PACKAGE.parent)) for f in folders if not (f / "__init__.py").exists()
    )
    assert not missing, missing
