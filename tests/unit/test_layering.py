"""The package layering of ARCHITECTURE.md, checked over every import in src/facesearch and flows/.

Lower layers never import higher ones; siblings on one layer (models | store, pipeline | serve) never
import each other. Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "facesearch"

# layer of each top-level part; a part may import parts of a strictly lower layer, and itself
LAYERS: dict[str, float] = {
    "errors": 0, "settings_sections": 0.5,
    "settings": 1, "logging_setup": 1,
    "models": 2, "store": 2,
    "ingest": 3,
    "pipeline": 4, "serve": 4,
    "serve.api": 5,
    "flows": 6,
    "cli": 7,
}


def part_of(module: str) -> str:
    """``facesearch.serve.api.routes`` -> ``serve.api``; ``facesearch.store.reads`` -> ``store``; ``flows.x`` -> ``flows``."""
    if module == "flows" or module.startswith("flows."):
        return "flows"
    parts = module.split(".")[1:]
    if parts[:2] == ["serve", "api"]:
        return "serve.api"
    return parts[0] if parts else ""


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "src") if path.is_relative_to(ROOT / "src") else path.relative_to(ROOT)
    return ".".join(rel.with_suffix("").parts).removesuffix(".__init__")


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "facesearch":  # from facesearch import X
                found += [(node.lineno, f"facesearch.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m.startswith(("facesearch.", "flows"))]


def violations() -> list[str]:
    bad = []
    files = [*SRC.rglob("*.py"), *(ROOT / "flows").rglob("*.py")]
    for path in files:
        me = part_of(module_name(path))
        if me not in LAYERS:
            bad.append(f"{path.relative_to(ROOT)}: part {me!r} has no layer in ARCHITECTURE.md")
            continue
        for line, target in imports_of(path):
            other = part_of(target)
            if other == me:
                continue
            if other not in LAYERS:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}: part {other!r} has no layer")
            elif LAYERS[other] >= LAYERS[me]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({me}, layer {LAYERS[me]}) imports {target} ({other}, layer {LAYERS[other]})")
    return bad


def test_lower_layers_never_import_higher_ones():
    assert violations() == []


def test_the_check_sees_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The checker itself can fail: a store module importing serve is reported."""
    fake = tmp_path / "bad.py"
    fake.write_text("from facesearch.serve.query import QueryService\n")
    assert imports_of(fake) == [(1, "facesearch.serve.query")]
    assert LAYERS[part_of("facesearch.serve.query")] > LAYERS[part_of("facesearch.store.reads")]
    assert part_of("facesearch.serve.api.routes") == "serve.api" and part_of("flows.reindex") == "flows"


def test_every_module_says_its_job():
    """Each module opens with a docstring (its one job)."""
    missing = [str(p.relative_to(ROOT)) for p in SRC.rglob("*.py") if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []


def test_modules_and_classes_stay_small():
    """No module over 400 lines, no class over 200 (ARCHITECTURE.md)."""
    big = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 200:  # type: ignore[operator]
                big.append(f"{path.relative_to(ROOT)}: class {node.name} {node.end_lineno - node.lineno + 1} lines")  # type: ignore[operator]
    assert big == []
