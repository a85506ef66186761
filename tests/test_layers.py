"""Dependencies flow one way: core -> index -> retrieval -> depth -> generation, with no cycles.

Every import of a storyreel module (module level or inside a function) is read from the source with
ast, so a lazy import cannot hide a backwards dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import storyreel

ROOT = Path(storyreel.__file__).resolve().parents[1]
LAYERS = ["core", "index", "retrieval", "depth", "generation"]
FOLDERS = {"core": ROOT / "storyreel" / "core", "index": ROOT / "index", "retrieval": ROOT / "retrieval",
           "depth": ROOT / "depth", "generation": ROOT / "generation"}
# Test helpers production may use: the tiny preset's builders and the demo's synthetic corpus.
# They sit on the core alone, so using them closes no cycle.
CORE_ONLY_HELPERS = {"storyreel.testing.tiny", "storyreel.testing.synthetic"}


def storyreel_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "storyreel" or n.startswith("storyreel.")}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for layer, folder in FOLDERS.items():
        allowed = set(LAYERS[:LAYERS.index(layer) + 1])
        for path in sorted(folder.rglob("*.py")):
            for module in storyreel_imports(path) - {"storyreel", "storyreel.testing"}:
                if module in CORE_ONLY_HELPERS or module.startswith(tuple(f"{h}." for h in CORE_ONLY_HELPERS)):
                    continue
                # storyreel.cli and the other storyreel.testing modules sit above every layer.
                if layer_of(module) not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_helpers_production_uses_sit_on_the_core_alone():
    for helper in CORE_ONLY_HELPERS:
        path = ROOT / (helper.replace(".", "/") + ".py")
        assert {layer_of(m) for m in storyreel_imports(path)} <= {"core"}, helper
