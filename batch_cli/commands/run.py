"""Runs of a month: run (solve and write a version), ticket (a signed ticket for a run launched elsewhere)."""

from __future__ import annotations

import click

from batch import actions
from batch.formats import format_count, headline
from batch.identity import DEFAULT_TICKET_MINUTES, MAX_TICKET_MINUTES, TICKET_TAG, make_ticket
from batch.lifecycle import EXECUTE_JOB
from batch.months import check_planned_month
from batch.roles import actor_from
from batch.times import local
from batch_cli.context import signer, store
from batch_cli.failures import friendly
from batch_cli.output import emit, err, out, print_pairs, version_summary
from batch_cli.submit import admitted, follow


@click.command()
@click.argument("month")
@click.option("--actor", help="Who acts (else BATCH_ADMIN_ACTOR).")
@click.option("--note", help="Why this iteration; required from version 2 on.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def run(month: str, actor: str | None, note: str | None, as_json: bool) -> None:
    """Solve the month and write a new version (planning steps included)."""
    run_id = follow(admitted(EXECUTE_JOB, month, actor, note).follows)
    version = store().versions(month)[-1]
    result = {"month": month, "run_id": run_id, **version_summary(version)}

    def human() -> None:

        rows = dict(headline(version["metrics"]))
        print_pairs(f"Month {month}: version {version['version']} proposed", {
            **rows, "Solve time": f"{version['metrics'].get('solve_seconds') or 0:,.1f} s",
            "Export": result["export_path"]}, aligned=True)
        conflicts = (version["metrics"].get("unprocessed_by_reason") or {}).get("pin_conflict")
        if conflicts:
            err.print(f"note: {format_count(conflicts)} pin(s) could not be honoured (reason pin_conflict); "
                      f"see `batch-admin report {month}`.", markup=False)

    emit(result, as_json, human)


@click.command()
@click.argument("months", nargs=-1, required=True)
@click.option("--job", required=True, help="The job the run executes (execute_job, plan_job, or __ASSET_JOB "
                                           "for assets materialized from the UI).")
@click.option("--actor", help="Who the run acts as (else BATCH_ADMIN_ACTOR); signed with that person's key.")
@click.option("--minutes", default=DEFAULT_TICKET_MINUTES, show_default=True,
              type=click.FloatRange(0, MAX_TICKET_MINUTES, min_open=True), help="How long the ticket is valid.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def ticket(months: tuple[str, ...], job: str, actor: str | None, minutes: float, as_json: bool) -> None:
    """A signed run ticket for a run launched in the UI or a backfill: one run per month listed."""
    for month in months:
        check_planned_month(month)
    who = actions.may(store(), "run", actor_from(actor), f"{job} for {', '.join(months)}")  # "run JOB for MONTHS"
    signed = make_ticket(signer(who), who, job, list(months), minutes)
    value = signed.encode()
    data = {"tag": TICKET_TAG, "value": value, "job": job, "months": sorted(months),
            "expires_at": signed.details["expires_at"], "actor": who}

    def human() -> None:
        err.print(f"Run ticket of {who} for {job}, {', '.join(sorted(months))}, valid until "
                  f"{local(signed.details['expires_at'])}, one run per month. In the UI's launchpad add the tag:")
        out.print(f"{TICKET_TAG}={value}", markup=False, soft_wrap=True)

    emit(data, as_json, human)


COMMANDS = (run, ticket)
