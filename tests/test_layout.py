"""The package layout follows the data flow, and imports point one way (SPEC §2).

Imports are read with ``ast`` from the source files, so nothing is imported and function-level
imports (the CLI's lazy ones) count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tickcast"

# Modules every stage may use: the domain type, configuration and small utilities.
SHARED = frozenset({"messages", "errors", "tasks", "logs", "settings", "hooks", "served"})

# The part of tickcast a module belongs to -> the parts it may import.
# ``None`` means any part but ``cli``: the modules that tie the stages together.
ALLOWED: dict[str, frozenset[str] | None] = {
    **{name: SHARED for name in SHARED},
    "sim": frozenset({"sim", "messages"}),
    "hub": frozenset({"hub"}) | SHARED,
    "upstream": frozenset({"upstream", "sim"}) | SHARED,
    "ingest": frozenset({"ingest", "hub", "upstream"}) | SHARED,
    "edge": frozenset({"edge", "hub"}) | SHARED,
    "node": None,
    "serve": None,
    "tail": None,
    "bench": None,
    "cli": None,
    "__init__": frozenset(),
}


# Modules held to a narrower rule than their part: the workers supervisor binds its port
# through ``listen`` and the server sets the GC policy before the app is imported.
MODULE_ALLOWED: dict[str, frozenset[str]] = {
    "tickcast.serve.listen": frozenset(),
    "tickcast.serve.gcpolicy": frozenset(),
}

# The top level ties the stages together; everything else lives in a package named for its
# stage (issue: at most 10 modules there, ``__init__`` included).
TOP_LEVEL = frozenset(
    {"__init__", "cli", "settings", "node", "ingest", "errors", "logs", "hooks", "tasks", "served"}
)


def part_of(module: str) -> str:
    """``tickcast.edge.session`` -> ``edge``; ``tickcast`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every ``tickcast`` module that ``source`` imports, relative imports resolved."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # ``from tickcast import cli`` names a module in the alias.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "tickcast" or name.startswith("tickcast.")}


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that break the layout's directions."""
    own = part_of(module)
    allowed = MODULE_ALLOWED.get(module, ALLOWED.get(own, frozenset()))
    out = []
    for target in sorted(imported_modules(source, module, is_package)):
        if target == "tickcast":
            continue
        other = part_of(target)
        if other not in ALLOWED:
            continue  # ``from tickcast.hub import Hub`` also yields ``tickcast.hub.Hub``
        if other == "cli" and own != "cli":
            out.append(f"{module} imports {target}: nothing imports the CLI")
        elif allowed is not None and other != own and other not in allowed:
            out.append(f"{module} imports {target}: {own} may import only {sorted(allowed)}")
    return out


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_part() -> None:
    """Each module of the package sits in a stage the layout rules know about."""
    unknown = {module_name(p) for p in all_modules() if part_of(module_name(p)) not in ALLOWED}
    assert not unknown, f"add these to ALLOWED in {__file__}: {sorted(unknown)}"


def test_the_top_level_holds_only_what_ties_the_stages_together() -> None:
    """At most 10 modules sit beside the stage packages, and each is one the layout names."""
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL, f"move into a stage package: {sorted(top - TOP_LEVEL)}"
    assert len(top) <= 10


def test_imports_point_one_way() -> None:
    """No module imports against the data flow, and nothing imports the CLI."""
    found = []
    for path in all_modules():
        found += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not found, "\n".join(found)


def test_every_package_says_what_it_holds_and_may_import() -> None:
    """Each package's docstring describes its contents and its import rule."""
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc, f"{init} docstring does not state what it may import"


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("tickcast.sim.exchange", "from tickcast.settings import Settings"),
        ("tickcast.sim.exchange", "from tickcast.edge.wire import Wire"),
        ("tickcast.upstream.binance", "from tickcast.hub.base import Hub"),
        ("tickcast.upstream.binance", "import tickcast.edge.session"),
        ("tickcast.edge.fanout", "from tickcast.upstream.normalize import Update"),
        ("tickcast.edge.fanout", "from tickcast.node import Node"),
        ("tickcast.edge.ws", "from ..upstream import pacing"),
        ("tickcast.hub.memory", "from tickcast.ingest import Ingest"),
        ("tickcast.serve.api", "def f():\n    from tickcast.cli import main"),
        ("tickcast.node", "from tickcast import cli"),
        ("tickcast.serve.listen", "from tickcast.settings import Settings"),
        ("tickcast.serve.gcpolicy", "from tickcast.logs import configure_logging"),
        ("tickcast.messages.tick", "from tickcast.hub.base import Hub"),
    ],
)
def test_checker_catches_a_wrong_direction(module: str, source: str) -> None:
    """The checker itself flags each kind of forbidden import, lazy and relative ones too."""
    assert violations(source, module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("tickcast.sim.exchange", "from tickcast.messages.tick import DEFAULT_SYMBOLS"),
        ("tickcast.upstream.sources", "from tickcast.sim.exchange import SimExchange"),
        ("tickcast.edge.fanout", "from tickcast.hub.base import Hub"),
        ("tickcast.edge.ws", "from .session import Session"),
        ("tickcast.node", "from tickcast.upstream.sources import build_source"),
    ],
)
def test_checker_allows_the_flow(module: str, source: str) -> None:
    """Imports along the data flow pass."""
    assert violations(source, module) == []
