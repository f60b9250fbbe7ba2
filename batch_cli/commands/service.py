"""Running the service: ui, migrate, worker, and what it keeps for operators: audit, alerts."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from batch.lifecycle import final_mismatch
from batch.months import check_month
from batch.times import local
from batch_cli.context import exports, settings, store
from batch_cli.failures import CliError, friendly
from batch_cli.output import emit, out, print_json, print_table
from resources.execution import QUEUES

MAX_WORKER_CONCURRENCY = 256  # pool processes of one `batch-admin worker`


@click.command()
@click.argument("month", required=False)
@click.option("--verify", is_flag=True, help="Check the hash chain, every signature, the anchors in manifests and "
                                            "the Dagster event log, and the state tables; fail on the first problem.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def audit(month: str | None, verify: bool, as_json: bool) -> None:
    """The append-only, hash-chained, signed audit log of a month (or of everything)."""
    if month is not None:
        check_month(month)
    control = store()
    if verify:
        from batch_cli.instance import event_log_anchors  # deferred: start-up speed (Dagster)

        anchors = [*exports().audit_anchors(), *event_log_anchors()]
        result = control.verify_audit(anchors)
        mismatches = [problem for m in control.months()
                      if (month is None or m["month"] == month) and (problem := final_mismatch(m, exports()))]
        result.problems.extend(f"{problem} (`batch-admin repair MONTH` fixes it)" for problem in mismatches)
        result.ok = not result.problems
        data = {"ok": result.ok, "entries": result.entries, "anchors": len(anchors), "problems": result.problems}
        if not result.ok:
            if as_json:
                print_json(data, sort_keys=False)
            raise CliError(f"The audit log was tampered with: {result.problems[0]}.",
                           "\n".join(result.problems[1:]) or None)
        emit(data, as_json, lambda: out.print(
            f"Audit log intact: {result.entries} entries, their signatures and {len(anchors)} anchors verified; "
            f"the state tables and official copies agree with it."))
        return
    entries = control.audit_entries(month)
    rows = [{k: e[k] for k in ("id", "month", "at", "actor", "action", "details", "hash")} for e in entries]

    def human() -> None:
        from batch.report import audit_line  # deferred: start-up speed (pandas, charts)

        def row(entry: dict[str, Any]) -> tuple[str, ...]:
            when, who, action, what = audit_line(entry)
            return str(entry["id"]), when, str(entry["month"] or ""), who, action, what

        print_table(("id", "when (local time)", "month", "who", "action", "what"), map(row, rows))

    emit(rows, as_json, human)


@click.command()
@click.argument("month", required=False)
@click.option("--pending", is_flag=True, help="Only alerts a sink has not taken yet (retried by the alert_outbox sensor).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def alerts(month: str | None, pending: bool, as_json: bool) -> None:
    """Alerts raised (all, or of one month), with their deliveries; --pending: those still waiting."""
    if month is not None:
        check_month(month)
    rows = store().alerts(month, pending=pending)

    def human() -> None:
        print_table(("id", "created", "month", "severity", "rule", "delivered", "message"),
                    ((str(a["id"]), local(a["created_at"]), str(a["month"] or ""), a["severity"], a["rule"],
                      _delivery(a), a["message"]) for a in rows))

    emit(rows, as_json, human)


def _delivery(alert: dict[str, Any]) -> str:
    """When a sink took the alert, else when it is tried next."""
    if alert["delivered_at"]:
        return local(alert["delivered_at"])
    if alert["next_attempt_at"]:
        return f"pending ({alert['attempts']} attempts, next {local(alert['next_attempt_at'])})"
    return "pending"


@click.command()
@friendly
def migrate() -> None:
    """Apply the control store's schema migrations and Dagster's instance migrations."""
    from batch_cli import instance as dagster_instance  # deferred: start-up speed (Dagster, SQLAlchemy)
    from resources.store_factory import migrate_control_store

    migrate_control_store(settings().control_url)
    dagster_instance.instance().upgrade()
    out.print("Control store and Dagster instance are up to date.")


@click.command()
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65534))
@click.option("--host", default="127.0.0.1", show_default=True)
@friendly
def ui(port: int, host: str) -> None:
    """The admin view on PORT and the Dagster UI and daemon (`dagster dev`) on PORT + 1, on this deployment."""
    from batch_cli import instance as dagster_instance  # deferred: start-up speed (Dagster)

    dagster_instance.instance()  # prepares DAGSTER_HOME and sizes the solver pool
    # A process of its own (python -m batch_view): the view is an entry point beside the CLI, not part of it.
    os.execv(sys.executable, [sys.executable, "-m", "batch_view", "--host", host, "--port", str(port),
                              "--workspace", str(dagster_instance.WORKSPACE_YAML)])


@click.command()
@click.option("--queues", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues to serve: solver (the solve parts), default (every other step).")
@click.option("--concurrency", type=click.IntRange(1, MAX_WORKER_CONCURRENCY), default=None,
              help="Steps at a time (pool processes); default: the host's cores.")
@friendly
def worker(queues: str, concurrency: int | None) -> None:
    """A Celery worker for runs on the Celery executor (BATCH_ADMIN_EXECUTOR=celery)."""
    chosen = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if not chosen or unknown:
        raise CliError(f"--queues takes {' and/or '.join(QUEUES)}, not {','.join(unknown) or 'nothing'}.")
    from batch_cli.worker import run_worker  # deferred: start-up speed (Dagster)

    run_worker(settings(), chosen, concurrency)


COMMANDS = (audit, alerts, migrate, ui, worker)
