"""Dagster's private modules are reached from one module, whose list and Dagster version are pinned."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import dagster

from engine import internals as dagster_internals

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("assets", "batch", "batch_cli", "batch_view", "checks", "engine", "pipelines", "resources", "solvers",
           "bench")
INTERNALS = REPO_ROOT / "engine" / "internals.py"
# What engine/internals.py imports; a change here is a change to re-check on every upgrade.
PINNED = {
    "dagster._core.definitions.selector": ["JobSubsetSelector"],
    "dagster._core.events": ["EngineEventData"],
    "dagster._core.execution.plan.objects": ["ErrorSource", "StepFailureData"],
    "dagster._core.execution.retries": ["RetryMode"],
    "dagster._core.instance.ref": ["InstanceRef"],
    "dagster._core.launcher": ["CheckRunHealthResult", "LaunchRunContext", "WorkerStatus"],
    "dagster._core.remote_origin": ["InProcessCodeLocationOrigin", "RemoteJobOrigin", "RemoteRepositoryOrigin"],
    "dagster._core.remote_representation.code_location": ["InProcessCodeLocation"],
    "dagster._core.remote_representation.external": ["RemoteJob"],
    "dagster._core.run_coordinator.queued_run_coordinator": ["RunQueueConfig"],
    "dagster._core.storage.event_log.sqlite.sqlite_event_log": ["SqliteEventLogStorage"],
    "dagster._core.storage.sqlite": ["SQLITE_BUSY_TIMEOUT_SECONDS"],
    "dagster._core.storage.sqlite_storage": ["DagsterSqliteStorage"],
    "dagster._core.workspace.load_target": ["WorkspaceFileTarget"],
    "dagster._daemon.controller": ["get_daemon_statuses"],
    "dagster._daemon.run_coordinator.queued_run_coordinator_daemon": ["QueuedRunCoordinatorDaemon"],
    "dagster._grpc.impl": ["core_execute_run"],
    "dagster._serdes": ["ConfigurableClassData"],
    "dagster._utils": ["get_run_crash_explanation"],
    "dagster._utils.error": ["serializable_error_info_from_exc_info"],
    "dagster._utils.hosted_user_process": ["recon_job_from_origin"],
    "dagster._utils.interrupts": ["capture_interrupts"],
    "dagster_celery.executor": ["_submit_task"],
}


def private_imports(path: Path) -> dict[str, list[str]]:
    """The modules a file imports private names of Dagster from (dagster._*, or a _name of a Dagster package)."""
    found: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dagster"):
            names = [alias.name for alias in node.names]
            if node.module.startswith("dagster._") or any(name.startswith("_") and not name.startswith("__") for name in names):
                found.setdefault(node.module, []).extend(names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dagster._"):
                    found.setdefault(alias.name, [])
    return found


def test_no_product_module_but_the_internals_module_imports_dagster_internals():
    offenders = {str(path.relative_to(REPO_ROOT)): found
                 for package in PRODUCT for path in sorted((REPO_ROOT / package).rglob("*.py"))
                 if path != INTERNALS and (found := private_imports(path))}
    assert offenders == {}, "import these through engine/internals.py, with a comment why"


def test_the_list_of_dagster_internals_is_pinned():
    assert private_imports(INTERNALS) == PINNED


def test_the_internals_were_checked_on_the_installed_dagster():
    assert dagster.__version__ == dagster_internals.CHECKED_ON, (
        f"Dagster {dagster.__version__} is installed but engine/internals.py was checked on "
        f"{dagster_internals.CHECKED_ON}: re-check each import there, then update CHECKED_ON")


def test_each_private_import_has_a_comment_saying_who_uses_it_and_why():
    lines = INTERNALS.read_text().splitlines()
    imports = [number for number, line in enumerate(lines) if line.startswith("from dagster")]
    assert imports and all(lines[number - 1].startswith("# ") for number in imports)


# The private modules the warm workers import by name (engine/worker_preload.py skips one that is gone, so
# only this list tells an upgrade that a preload no longer exists).
PINNED_PRELOADS = ("dagster._core.instance.factory", "dagster._core.storage.sqlite_storage", "dagster._utils.test")


def test_the_private_modules_preloaded_by_name_are_pinned_and_still_exist():
    assert dagster_internals.PRELOADED_MODULES == PINNED_PRELOADS
    assert [name for name in PINNED_PRELOADS if importlib.util.find_spec(name) is None] == []
