"""Layering: the media engine imports nothing from signalling (DESIGN.md, processes and layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MEDIA = Path(__file__).resolve().parents[2] / "media"


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy and TYPE_CHECKING imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(MEDIA.rglob("*.py")), ids=lambda p: p.name)
def test_media_module_imports_nothing_from_voipcore(path: Path) -> None:
    assert not {n for n in _imported(path) if n.split(".")[0] == "voipcore"}


def test_media_modules_are_found() -> None:
    assert (MEDIA / "control.py").is_file()
