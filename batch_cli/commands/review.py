"""Reviewing versions: diff (two versions), report (one version's HTML page), whatif (a change, read-only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from batch.formats import format_change, format_figure
from batch.months import check_month
from batch_cli.context import exports, protected_paths, settings, store
from batch_cli.failures import OS_ADVICE, CliError, friendly
from batch_cli.output import emit, out, print_table

# Moves printed in the human answer of whatif (--json lists up to batch.whatif.MAX_LISTED_MOVES).
SHOWN_MOVES = 20


@click.command()
@click.argument("month")
@click.option("--from", "from_version", required=True, type=int)
@click.option("--to", "to_version", required=True, type=int)
@click.option("--all", "every", is_flag=True, help="Every metric (timings, sizes...) and every moved request.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def diff(month: str, from_version: int, to_version: int, every: bool, as_json: bool) -> None:
    """Compare two versions: objective, gap, success rate and counts first, then the requests that moved."""
    check_month(month)
    # Deferred: start-up speed (pandas, charts).
    from batch.report import TOP_MOVES, leading_changes

    result = exports().diff(month, from_version, to_version)

    def human() -> None:
        counts = result["counts"]
        out.print(f"[bold]{month}: version {from_version} -> {to_version}[/bold]  "
                  f"moved {counts['moved']:,}, added {counts['added']:,}, removed {counts['removed']:,}, "
                  f"unchanged {counts['unchanged']:,}")
        print_table(("metric", "from", "to", "change"),
                    ((name.replace("_", " "), format_figure(name, change.get("from")),
                      format_figure(name, change.get("to")), format_change(name, change.get("change")))
                     for name, change in leading_changes(result, every).items()))
        shown = (result["moved"] if every else result["moved"][:TOP_MOVES])
        for title, items, fmt in (("moved", shown, lambda m: f"{m['request_id']}: {m['from_resource']} -> {m['to_resource']}"),
                                  ("added", result["added"] if every else result["added"][:TOP_MOVES],
                                   lambda m: f"{m['request_id']} -> {m['resource_id']}"),
                                  ("removed", result["removed"] if every else result["removed"][:TOP_MOVES],
                                   lambda m: f"{m['request_id']} (was {m['resource_id']})")):
            if items:
                total = counts[title]
                more = "" if len(items) == total else f" (first {len(items)} of {total:,}; --all for every one)"
                out.print(f"{title}{more}: " + ", ".join(fmt(m) for m in items), markup=False)
        if not every:
            out.print("--all shows every metric, timings included.", style="dim")

    emit(result, as_json, human)


@click.command()
@click.argument("month")
@click.option("--version", "version", type=int, help="A given version (default: the final one, else the latest).")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="Where to write the page (default: report.html beside the version's manifest); outside "
                   "BATCH_ADMIN_HOME, like an export.")
@click.option("--force", is_flag=True, help="Replace the --out file if it exists.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def report(month: str, version: int | None, out_path: Path | None, force: bool, as_json: bool) -> None:
    """One self-contained HTML page about a version: figures, charts, reasons, changes, who did what."""
    check_month(month)
    from batch.report import version_view  # deferred: start-up speed (pandas, charts)
    from resources.storage import check_target

    if out_path is not None:  # the export's rules, checked before the page is built
        out_path = check_target(settings().home, out_path, force, protected_paths())
    store_ = exports()
    try:
        view = version_view(store(), store_, month, version)
    except LookupError as exc:
        raise CliError(str(exc)) from None
    html = view.to_html()
    if out_path is None:
        path = store_.write_report(month, view.version, html)
    else:
        path = write_file(out_path, html, "report")
    result = {"month": month, "version": view.version, "final": view.final, "path": str(path)}
    emit(result, as_json, lambda: out.print(f"Report of {view.title}: {path}", markup=False))

def write_file(path: Path, text: str, what: str) -> Path:
    """Write `text` to the --out file `path` through a temporary file renamed over it: a failed write (a full
    disk) leaves what was there, and is refused in one sentence like an export's (exit 1)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        advice = OS_ADVICE.get(exc.errno or 0)
        raise CliError(f"Cannot write the {what} to {path}: {exc.strerror or exc}"
                       f"{f'; {advice}' if advice else ''}.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


@click.command("whatif")
@click.argument("month")
@click.option("--capacity", "capacity", multiple=True, metavar="RES=+N", help="Change a resource's capacity.")
@click.option("--pin", "pins", multiple=True, metavar="REQ=RES", help="Fix a request to a resource.")
@click.option("--exclude", "exclusions", multiple=True, metavar="REQ", help="Remove a request.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Set a batch parameter.")
@click.option("--json", "as_json", is_flag=True)
def whatif(month: str, capacity: tuple[str, ...], pins: tuple[str, ...], exclusions: tuple[str, ...],
           assignments: tuple[str, ...], as_json: bool) -> None:
    """Preview a change against the latest version (read-only: no version, audit entry or lock)."""
    check_month(month)
    # Deferred: start-up speed (pandas and the solver load only when a what-if runs).
    from batch.whatif import Change, what_if

    change = Change.parse(list(capacity), list(pins), list(exclusions), list(assignments))
    answer = what_if(settings().home, exports(), month, change)
    emit(answer, as_json, lambda: _print_whatif(answer))


def _print_whatif(answer: dict[str, Any]) -> None:
    """Before and after side by side, then the moves and the groups whose shortage changes."""
    before, after = answer["before"], answer["after"]
    rows = []
    for key, label, fmt in (("objective", "objective", "{:,.0f}"), ("allocated", "allocated", "{:,}"),
                            ("success_rate", "success rate", "{:.1%}"), ("utilization", "utilization", "{:.1%}"),
                            ("capacity_units", "capacity units", "{:,}")):
        old, new = before.get(key), after.get(key)
        change = "" if old is None or new is None or old == new else fmt.replace("{:", "{:+").format(new - old)
        rows.append((label, "" if old is None else fmt.format(old), "" if new is None else fmt.format(new), change))
    print_table(("", "before", "after", "change"), rows, title=f"What if, against {answer['month']} version "
                f"{answer['version']} (nothing written)", title_justify="left")
    solved = answer.get("solved")
    if solved:
        out.print(f"re-solved {answer['parts']['re_solved']} of {answer['parts']['of']} independent parts "
                  f"({solved['requests']:,} requests): objective {solved['objective']:,.0f}, bound "
                  f"{solved['bound']:,.0f}, gap {solved['gap']:.3%} in {answer['seconds']['total']:.2f} s", markup=False)
    moves = answer["moves"]
    out.print(f"requests that would move: {moves['count']:,}", markup=False)
    for move in moves["list"][:SHOWN_MOVES]:
        out.print(f"  {move['request_id']}: {move['from'] or 'unallocated'} -> {move['to'] or 'unallocated'}",
                  markup=False)
    if moves["count"] > SHOWN_MOVES:
        out.print(f"  ... and {moves['count'] - SHOWN_MOVES:,} more (--json lists them)", markup=False)
    for group in answer["groups"]:
        out.print(f"shortage of {group['service']}/{group['region']}: {group['unallocated_before']:,} -> "
                  f"{group['unallocated_after']:,} unallocated requests", markup=False)


COMMANDS = (diff, report, whatif)
