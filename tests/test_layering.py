"""Imports point down the layer order of docs/architecture.md, read from the source of every module:
ops <- backbones <- perception <- bev <- occupancy, lane_topology (the last two are siblings), and
nothing imports tools/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"ops": 0, "backbones": 1, "perception": 2, "bev": 3, "occupancy": 4, "lane_topology": 4}


def imported_packages(source: str, module: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in ``source`` (relative imports resolved against
    ``module``, the dotted name of the file), at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                found.append((node.lineno, (base or [""])[0]))
            elif node.module:
                found.append((node.lineno, node.module.split(".")[0]))
    return found


def layering_violations(source: str, module: str) -> list[str]:
    """Imports of ``module`` that reach a package above or beside its own layer, or tools/."""
    own = module.split(".")[0]
    bad = []
    for line, package in imported_packages(source, module):
        if package == "tools" or package.startswith("_runner_common"):
            bad.append(f"{module}:{line} imports tools")
        elif package in LAYERS and package != own and LAYERS[package] >= LAYERS[own]:
            bad.append(f"{module}:{line} imports {package} (layer {LAYERS[package]} >= {own}'s {LAYERS[own]})")
    return bad


def _modules():
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            # A package's __init__ keeps its own name as a last part, so relative imports resolve alike.
            yield path, ".".join(parts) if rel.name != "__init__" else ".".join(parts) + ".__init__"


def test_the_checker_flags_upward_and_sideways_imports():
    assert layering_violations("import bev\n", "perception.models.layers")
    assert layering_violations("from occupancy.head import X\n", "bev.model")
    assert layering_violations("def f():\n    from lane_topology import y\n", "occupancy.head")
    assert not layering_violations("from ..bev import spine\n", "perception.data.x")  # perception.bev
    assert layering_violations("from tools import demo\n", "bev.model")
    assert not layering_violations("from perception.structures import BEVGrid\nimport ops\n", "bev.spine")
    assert not layering_violations("from .spine import BEVSpine\n", "bev.model")


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_point_down_only(package):
    modules = [(path, name) for path, name in _modules() if name.split(".")[0] == package]
    assert modules, f"no modules found for {package}"
    bad = [v for path, name in modules for v in layering_violations(path.read_text(), name)]
    assert not bad, "\n".join(bad)
