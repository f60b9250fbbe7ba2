"""The CLI is parsing and printing around the action layer: no module of batch_cli imports the control
store's module (it gets the store from resources.store_factory), so no store rule is reachable but through
batch.actions and the store's own methods."""

from __future__ import annotations

import ast
from pathlib import Path

import batch_cli

FORBIDDEN = "resources.control_store"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_of_batch_cli_imports_the_control_store():
    folder = Path(batch_cli.__file__).parent
    modules = sorted(folder.rglob("*.py"))  # the command groups' subpackage too
    assert len(modules) >= 5  # the package's modules were found
    offenders = {str(m.relative_to(folder)): sorted(n for n in _imports(m) if n == FORBIDDEN or n.startswith(FORBIDDEN + "."))
                 for m in modules}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_sees_an_import_of_the_store_in_any_form(tmp_path):
    sample = tmp_path / "sample.py"
    for line in ("import resources.control_store", "from resources.control_store import utcnow",
                 "from resources import control_store", "def f():\n    from resources.control_store import X"):
        sample.write_text(line + "\n")
        assert any(n == FORBIDDEN or n.startswith(FORBIDDEN + ".") for n in _imports(sample)), line
