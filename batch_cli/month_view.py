"""A month as `batch-admin status` prints it: every month at a glance, or one month in full."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from batch.advice_text import ADVICE_KEY, advice_lines
from batch.formats import format_count, format_figure
from batch.times import local
from batch_cli.output import out, pct, print_advice, print_table

# Why a version's solve stopped (solvers' Proposal.stop_reason), as the status table says it.
STOP_WORDS = {"optimal": "optimal", "gap_tolerance": "tolerance", "time_limit": "time limit",
              "deterministic_budget": "work budget"}


def print_overview(lines: list[dict[str, Any]]) -> None:
    """One row per month."""
    if not lines:
        out.print("No months yet: land inputs (or `batch-admin demo-data YYYY-MM`) and run one.")
        return
    print_table(("month", "phase", "versions", "final", "lock", "requests", "allocated", "success", "utilization",
                 "gap", "alerts"),
                ((line["month"], line["phase"], str(line["versions"]),
                  f"v{line['final_version']}" if line["final_version"] else "–", line["lock"] or "–",
                  format_count(line["requests"]), format_count(line["allocated"]),
                  format_figure("success_rate", line["success_rate"]),
                  format_figure("utilization", line["utilization"]), format_figure("gap", line["gap"]),
                  f"{line['alerts']}" + (f" ({line['errors']} errors)" if line["errors"] else ""))
                 for line in lines),
                title="Every month", title_justify="left")


def print_status(result: dict[str, Any]) -> None:
    """Phase, locks, requests, settings, versions, then the month's health and the capacity advice."""
    out.print(f"[bold]{result['month']}[/bold]  phase: [bold]{result['phase']}[/bold]")
    if result["lock"]:
        lock = result["lock"]
        state = "active" if lock["active"] else "expired"
        out.print(f"temporary lock ({state}): {lock['holder']} for {', '.join(lock['admins'])} until {local(lock['expires_at'])}")
    if result.get("lease"):
        lease = result["lease"]
        since = f"run {lease['run_id']} since {local(lease['acquired_at'])}"
        if lease["alive"]:
            out.print(f"executing: {since}, last heartbeat {lease['heartbeat_age_s']:.0f} s ago", markup=False)
        else:
            out.print(f"[red]executing:[/red] {escape(since)}: dead ({escape(lease['dead_because'])}); "
                      f"the next run takes over")
    if result["final"]:
        final = result["final"]
        out.print(f"final lock: version {final['version']} by {final['finalized_by']}, "
                  f"approved by {final['approved_by']} at {local(final['finalized_at'])}")
    if result.get("official_copy_problem"):
        out.print(f"[red]inconsistent:[/red] {escape(result['official_copy_problem'])}; "
                  f"`batch-admin repair {result['month']}` completes or rolls it back.")
    for request in result.get("requests") or []:
        out.print(f"request {request['id']} ({request['status']}): {request['kind']}"
                  f"{' version ' + str(request['version']) if request['kind'] == 'finalize' else ''} by "
                  f"{request['requested_by']}, expires {local(request['expires_at'])}", markup=False)
    print_settings(result)
    print_table(("version", "created", "actor", "requests", "allocated", "success", "objective", "gap", "solve s",
                 "stopped", "moved", "note"),
                ((str(v["version"]), local(v["created_at"]), str(v["actor"]), format_count(v["requests"]),
                  format_count(v["allocated"]), format_figure("success_rate", v["success_rate"]),
                  format_count(v["objective"]), format_figure("gap", v["gap"]),
                  format_figure("solve_seconds", v["solve_seconds"]), STOP_WORDS.get(v["stop_reason"] or "", "–"),
                  _moved(v["churn"]), v["note"] or "") for v in result["versions"]))
    _print_health(result.get("health") or {})
    if result.get(ADVICE_KEY):
        print_advice(advice_lines(result[ADVICE_KEY], count=3))


def _print_health(health: dict[str, Any]) -> None:
    """Unprocessed requests by reason, planned utilization, planned vs actual, the trend, the problems."""
    metrics = health.get("metrics") or {}
    if metrics.get("unprocessed_by_reason"):
        out.print("unprocessed by reason: " + ", ".join(
            f"{reason} {count}" for reason, count in sorted(metrics["unprocessed_by_reason"].items())))
    if health.get("utilization_by_service_region"):
        print_table(("service", "region", "resources", "capacity", "planned", "utilization"),
                    ((str(row.get("service")), str(row.get("region")), format_count(row.get("resources")),
                      format_count(row.get("capacity")), format_count(row.get("planned_units")),
                      format_figure("utilization", row.get("utilization")))
                     for row in health["utilization_by_service_region"]),
                    title="Planned utilization")
    if health.get("planned_vs_actual"):
        pva = health["planned_vs_actual"]
        out.print(f"planned vs actual: planned {pct(pva.get('planned_utilization'))}, "
                  f"actual {pct(pva.get('actual_utilization'))}")
    if len(health.get("trend") or []) > 1:
        print_table(("month", "version", "success", "unallocated", "utilization", "objective", "gap"),
                    ((row["month"], str(row.get("version") or ""), pct(row.get("success_rate")),
                      pct(row.get("unallocated_ratio")), pct(row.get("utilization")),
                      format_count(row.get("objective")), format_figure("gap", row.get("gap")))
                     for row in health["trend"]),
                    title="Trend")
    for problem in health.get("problems") or []:
        out.print(f"[yellow]note:[/yellow] {problem}")


def print_settings(result: dict[str, Any]) -> None:
    """The month's parameters, pins and exclusions, each with who set it, when and (for adjustments) why."""
    settings = result.get("params_set") or []
    if settings:
        print_table(("parameter", "value", "set by", "at"),
                    ((s["key"], str(s["value"]), s["actor"] or "?", local(s["at"])) for s in settings),
                    title="Parameters (others at their defaults)", title_justify="left")
    else:
        out.print("parameters: every one at its default")
    adjustments = result.get("adjustments") or {}
    rows = [("pinned to " + str(a["resource_id"]), a) for a in adjustments.get("pins") or []]
    rows += [("excluded", a) for a in adjustments.get("exclusions") or []]
    if not rows:
        out.print("pins and exclusions: none")
        return
    print_table(("request", "adjustment", "set by", "at", "note"),
                ((a["request_id"], what, a["actor"], local(a["at"]), a["note"]) for what, a in rows),
                title="Pins and exclusions for the next run", title_justify="left")


def _moved(churn: dict[str, Any] | None) -> str:
    """Requests moved since the previous version (solvers/churn.py), '–' for a first version."""
    if not churn or not churn.get("previous_allocated"):
        return "–"
    return f"{int(churn['requests_moved']):,}"
