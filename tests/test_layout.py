"""The package's rooms import only downward: checked by parsing every import statement (no import runs).

Lowest first; a module may import its own rank or lower.  Imports under ``if TYPE_CHECKING:`` are
annotations only and do not count.  The longest matching prefix names a module's rank.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ternaryclip"

RANKS = {
    "ternaryclip._version": 0,
    "ternaryclip.choices": 0,
    "ternaryclip.arch": 0,
    "ternaryclip.files": 0,
    "ternaryclip.assets": 0,
    "ternaryclip.kernels": 1,
    "ternaryclip.data": 1,
    "ternaryclip.torch_clip": 1,  # loading, describing and calling torch CLIPs; never the runtime
    "ternaryclip.quant": 2,
    "ternaryclip.pack": 3,
    "ternaryclip.runtime": 4,
    "ternaryclip.protocols": 0,  # imports only for type checking
    "ternaryclip.eval": 6,
    "ternaryclip.distill": 7,
    "ternaryclip.bench": 7,
    "ternaryclip.serve": 7,  # runtime + eval's numpy zero-shot recipe; never torch
    "ternaryclip.photos": 8,  # index/search on the runtime, pages on the server
    "ternaryclip.quickstart": 8,
    "ternaryclip.cli": 9,
    "ternaryclip.__main__": 9,
    "ternaryclip": 9,  # the package root is the public facade: it may reach anything, nothing reaches it
}


def rank(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in RANKS:
            return RANKS[prefix]
    raise KeyError(f"{module} has no rank in tests/test_layout.py")


def module_name(path: Path) -> str:
    parts = ("ternaryclip", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        else:
            yield from _imports(node)


def imported_modules(path: Path) -> set[str]:
    """Every ``ternaryclip`` module the file imports, at top level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
            continue
        base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
        target = ".".join(base + ([node.module] if node.module else []))
        if node.module is None:  # from . import x: x is a module of the package
            found.update(f"{target}.{a.name}" for a in node.names)
        else:
            found.add(target)
    return {m for m in found if m == "ternaryclip" or m.startswith("ternaryclip.")}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_parser_sees_relative_and_nested_imports():
    graph = import_graph()
    assert "ternaryclip.torch_clip.describe" in graph["ternaryclip.pack.export"]  # top level, relative
    assert "ternaryclip.runtime" in graph["ternaryclip.eval.run"]  # inside a function
    assert "ternaryclip._version" in graph["ternaryclip"]


def test_no_room_imports_a_higher_room():
    upward = [
        f"{source} (rank {rank(source)}) imports {target} (rank {rank(target)})"
        for source, targets in import_graph().items()
        for target in sorted(targets)
        if rank(target) > rank(source)
    ]
    assert not upward, "\n".join(upward)


def test_named_arrows_stay_absent():
    graph = import_graph()
    for source, targets in graph.items():
        if source.startswith("ternaryclip.pack"):
            assert not {t for t in targets if t == "ternaryclip" or t.startswith("ternaryclip.runtime")}, source
        if source.startswith("ternaryclip.eval"):
            assert not {t for t in targets if t.startswith("ternaryclip.distill")}, source
        if source.startswith(("ternaryclip.runtime", "ternaryclip.kernels")):
            assert not {t for t in targets if t.startswith("ternaryclip.torch_clip")}, source
