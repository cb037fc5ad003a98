"""The packages are layers and imports go one way (docs/architecture.md): a module may import only
from its own package and the packages below it. Every `import` statement counts, lazy ones too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALLOWED: dict[str, set[str]] = {
    "contract": set(),
    "store": {"contract"},
    "editing": {"contract"},
    "evaluation": {"contract", "editing"},
    "workers": {"contract", "store", "editing"},
    "service": {"contract", "store"},
    "cli": {"contract", "store", "editing", "evaluation", "workers", "service"},
}


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every absolute import of one of our packages in `path`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in ALLOWED}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_go_down(package: str) -> None:
    back = [f"{path.relative_to(REPO)}:{line} imports {target}"
            for path in sorted((REPO / package).rglob("*.py"))
            for line, target in sorted(imported_packages(path))
            if target != package and target not in ALLOWED[package]]
    assert not back, "imports that run back up the layers:\n" + "\n".join(back)


def test_the_checker_sees_a_back_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from service.main import create_app\n    import workers.state\n")
    assert imported_packages(module) == {(2, "service"), (3, "workers")}
