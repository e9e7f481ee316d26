"""What the code imports is what pyproject.toml declares, and nothing declared goes unused."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CODE = [REPO / "services", REPO / "shared"]
OURS = {"customlabels", "services"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_normalise(re.split(r"[<>=!~\[; ]", spec, 1)[0]) for spec in project["dependencies"]}


def _imported_top_level_modules() -> set[str]:
    found = set()
    for root in CODE:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - OURS - set(sys.stdlib_module_names) - {"__future__"}


def test_every_imported_package_is_declared():
    distributions = packages_distributions()
    declared = _declared()
    missing = {}
    for module in sorted(_imported_top_level_modules()):
        owners = {_normalise(d) for d in distributions.get(module, [module])}
        if not owners & declared:
            missing[module] = sorted(owners)
    assert not missing, f"imported but not in pyproject's dependencies (module: distributions): {missing}"


def test_every_declared_dependency_is_imported():
    distributions = packages_distributions()
    imported = {_normalise(d) for m in _imported_top_level_modules() for d in distributions.get(m, [m])}
    unused = _declared() - imported
    assert not unused, f"declared in pyproject but imported nowhere in services/ or shared/: {sorted(unused)}"
