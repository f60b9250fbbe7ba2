"""The `batch-admin` command line: plan, run, review, finalize and export months."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pipelines.orchestration import OrchestrationError, check_month, run_job
from pipelines.params import ParamError
from pipelines.roles import ACTOR_TAG, NOTE_TAG, RoleError, Roles, actor_from
from resources.control_store import ControlError, ControlStore
from resources.settings import Settings

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(Exception):
    """One clear sentence for stderr, with an optional block of details after it."""

    def __init__(self, message: str, details: str | None = None):
        super().__init__(message)
        self.details = details


def _known_errors() -> tuple[type[BaseException], ...]:
    from checks.inputs import InputError

    errors: list[type[BaseException]] = [CliError, ControlError, RoleError, ParamError,
                                         OrchestrationError, InputError]
    try:
        from resources.storage import ExportError

        errors.append(ExportError)
    except ImportError:  # pragma: no cover - storage always ships
        pass
    return tuple(errors)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the product's refusals into one sentence on stderr and exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _known_errors() as exc:
            message = str(exc).strip()
            first, _, rest = message.partition("\n")
            err.print(f"error: {first}", markup=False)
            details = getattr(exc, "details", None) or rest
            if details:
                err.print(details.strip(), markup=False)
            sys.exit(1)

    return wrapper


def settings() -> Settings:
    return Settings.from_env()


def store() -> ControlStore:
    return ControlStore(settings().control_url)


def roles() -> Roles:
    return Roles.load(settings().roles_file)


def require_admin(actor: str | None, action: str) -> str:
    return roles().require_admin(actor_from(actor), action)


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
    else:
        human()


def _run_or_fail(job: str, month: str, actor: str | None, note: str | None = None,
                 run_config: dict[str, Any] | None = None) -> str:
    tags = {ACTOR_TAG: actor} if actor else {}
    if note:
        tags[NOTE_TAG] = note
    with err.status(f"{job} for {month} ..."):
        outcome = run_job(job, month, tags, run_config)
    if not outcome.success:
        raise CliError(outcome.error or f"{job} for {month} failed (run {outcome.run_id}).")
    return outcome.run_id


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Control plane for the monthly allocation batch (state under BATCH_ADMIN_HOME)."""


@main.command("demo-data")
@click.argument("month")
@click.option("--requests", "n_requests", default=2000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--resources", "n_resources", default=120, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def demo_data(month: str, n_requests: int, n_resources: int, seed: int, as_json: bool) -> None:
    """Write a realistic, deterministic month of inputs into landing/YYYY-MM/."""
    from pipelines.demo_data import generate_month, write_landing

    check_month(month, partitioned=False)
    tables = generate_month(month, requests=n_requests, resources=n_resources, seed=seed)
    path = write_landing(settings().home, month, tables)
    result = {"month": month, "landing": str(path), **{t: len(df) for t, df in tables.items()}}
    emit(result, as_json, lambda: out.print(
        f"Wrote {month}: {result.get('requests', 0)} requests, {result.get('resources', 0)} resources -> {path}"))


@main.command()
@click.argument("month")
@click.option("--actor", help="Who acts (else BATCH_ADMIN_ACTOR).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def plan(month: str, actor: str | None, as_json: bool) -> None:
    """Preview a month: validate inputs, demand vs capacity, conflicts, expected allocation."""
    from pipelines.jobs import PLAN_JOB

    check_month(month)
    who = require_admin(actor, f"plan {month}")
    run_id = _run_or_fail(PLAN_JOB, month, who)
    latest = store().latest_plan(month) or {}
    result = {"month": month, "run_id": run_id, "plan": latest.get("summary", {})}
    emit(result, as_json, lambda: _print_mapping(f"Plan of {month} (run {run_id})", result["plan"]))


@main.command()
@click.argument("month")
@click.option("--actor", help="Who acts (else BATCH_ADMIN_ACTOR).")
@click.option("--note", help="Why this iteration; required from version 2 on.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def run(month: str, actor: str | None, note: str | None, as_json: bool) -> None:
    """Solve the month and write a new version (planning steps included)."""
    from pipelines.jobs import EXECUTE_JOB

    check_month(month)
    who = require_admin(actor, f"run {month}")
    control = store()
    control.check_can_run(month, who, note)
    run_id = _run_or_fail(EXECUTE_JOB, month, who, note)
    version = control.versions(month)[-1]
    result = {"month": month, "run_id": run_id, **_version_summary(version)}
    emit(result, as_json, lambda: _print_mapping(f"Month {month}: version {version['version']} proposed", {
        k: result[k] for k in ("version", "requests", "allocated", "success_rate", "objective",
                               "bound", "gap", "solve_seconds", "export_path")}))


def _version_summary(version: dict[str, Any]) -> dict[str, Any]:
    metrics = version["metrics"]
    return {
        "version": version["version"], "created_at": version["created_at"], "actor": version["actor"],
        "note": version["note"], "status": version["status"], "export_path": version["export_path"],
        "requests": metrics.get("requests"), "allocated": metrics.get("allocated"),
        "success_rate": metrics.get("success_rate"), "objective": metrics.get("objective"),
        "bound": metrics.get("bound"), "gap": metrics.get("gap"),
        "solve_seconds": metrics.get("solve_seconds"), "metrics": metrics,
    }


def _print_mapping(title: str, mapping: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in mapping.items():
        if isinstance(value, float):
            value = f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
        table.add_row(str(key), str(value))
    out.print(table)


@main.command()
@click.argument("month")
@click.option("--json", "as_json", is_flag=True)
@friendly
def status(month: str, as_json: bool) -> None:
    """Phase, locks, versions with their metrics, finalization and approvals of a month."""
    check_month(month, partitioned=False)
    control = store()
    row = control.month(month)
    lock = control.lock_info(month)
    pins, exclusions = control.pins_and_exclusions(month)
    result = {
        "month": month, "phase": row["phase"],
        "lock": lock.to_dict() if lock else None,
        "final": {"version": row["final_version"], "finalized_by": row["finalized_by"],
                  "approved_by": row["approved_by"], "finalized_at": row["finalized_at"]}
        if row["final_version"] else None,
        "params": control.params(month),
        "adjustments": {"pins": pins, "exclusions": sorted(exclusions)},
        "plan": (control.latest_plan(month) or {}).get("summary"),
        "versions": [_version_summary(v) for v in control.versions(month)],
    }
    emit(result, as_json, lambda: _print_status(result))


def _print_status(result: dict[str, Any]) -> None:
    out.print(f"[bold]{result['month']}[/bold]  phase: [bold]{result['phase']}[/bold]")
    if result["lock"]:
        lock = result["lock"]
        state = "active" if lock["active"] else "expired"
        out.print(f"temporary lock ({state}): {lock['holder']} for {', '.join(lock['admins'])} until {lock['expires_at']}")
    if result["final"]:
        final = result["final"]
        out.print(f"final lock: version {final['version']} by {final['finalized_by']}, "
                  f"approved by {final['approved_by']} at {final['finalized_at']}")
    table = Table("version", "created", "actor", "requests", "allocated", "success", "objective", "gap", "solve s", "note")
    for v in result["versions"]:
        table.add_row(str(v["version"]), str(v["created_at"])[:19], str(v["actor"]), str(v["requests"]),
                      str(v["allocated"]), f"{(v['success_rate'] or 0):.1%}", f"{(v['objective'] or 0):,.0f}",
                      f"{(v['gap'] or 0):.3%}", f"{(v['solve_seconds'] or 0):.1f}", v["note"] or "")
    out.print(table)


def main_entry() -> None:  # pragma: no cover - console script alias
    main(prog_name="batch-admin")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="batch-admin")
