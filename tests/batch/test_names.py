"""One name for each thing: a run tag, an environment variable or a folder of the home is spelled once, in
batch/names.py; every other product module imports it (a message may mention it, as text)."""

from __future__ import annotations

import ast
from pathlib import Path

from batch import names

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("batch", "batch_cli", "batch_view", "engine", "resources", "assets", "checks", "pipelines", "solvers")
# Folder names that are also ordinary words of other things (a Dagster asset group, a JSON key): only the
# tags and variables are checked everywhere.
SPELLED_ONCE = {value for key, value in vars(names).items() if key.endswith(("_TAG", "_VAR"))}


def product_files() -> list[Path]:
    return [path for package in PRODUCT for path in sorted((ROOT / package).rglob("*.py"))
            if path != ROOT / "batch" / "names.py"]


def spelled_again(paths: list[Path]) -> list[str]:
    """Each string constant of these files that is a tag's or a variable's whole name."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in SPELLED_ONCE:
                found.append(f"{path.name}:{node.lineno} {node.value!r}")
    return found


def test_every_run_tag_and_environment_variable_is_spelled_only_in_batch_names():
    assert len(SPELLED_ONCE) >= 20  # the module holds them (a renamed suffix would empty this test)
    assert spelled_again(product_files()) == []


def test_the_check_finds_a_name_spelled_again(tmp_path):
    stray = tmp_path / "stray.py"
    stray.write_text('"""BATCH_ADMIN_HOME in a sentence is fine."""\nTAG = "batch_admin/ticket"\n', encoding="utf-8")
    assert spelled_again([stray]) == ["stray.py:2 'batch_admin/ticket'"]
