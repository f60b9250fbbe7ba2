"""One version's story in one place: figures, charts, reasons, changes and who did what; no Dagster.

`version_view()` gathers everything about a version from the control store and the export store;
the asset metadata, `batch-admin report` and the HTML page beside `manifest.json` all read it, so
a figure reads the same everywhere it appears.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from batch import adjustment_log, charts
from batch.advice_text import ADVICE_KEY, advice_html, advice_markdown
from batch.formats import format_count, format_figure, format_percent, headline
from batch.health import landed_tables, trend
from batch.lifecycle import PHASE_FINALIZED
from batch.metrics import (
    counts_by_reason,
    planned_vs_actual,
    relative_gap,
    utilization_table,
    version_metrics,
)
from batch.ports import ExportReads, ExportReports, RecordsPort, ReportRecords
from batch.standing import STATE_WITHDRAWN, Standing, ever_final, version_standing

TOP_REASONS = 8
TOP_MOVES = 20
# The figures of a diff that lead, in this order (the rest is behind `diff --all`).
DIFF_LEADING = ("objective", "gap", "success_rate", "allocated", "unallocated", "excluded", "pinned", "utilization",
                "allocated_units")


@dataclass
class VersionView:
    """Everything people judge a version by, computed once."""

    month: str
    version: int
    final: bool
    phase: str
    manifest: dict[str, Any]
    rows: pd.DataFrame
    figures: dict[str, Any]
    utilization: pd.DataFrame = field(default_factory=pd.DataFrame)
    resource_utilization: pd.DataFrame = field(default_factory=pd.DataFrame)
    actuals: pd.DataFrame | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    diff: dict[str, Any] | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # Final now, a withdrawn final or proposed, and the run that computed the version.
    standing: Standing | None = None
    # The rendered charts, made once: the HTML report and the Dagster metadata show the same PNGs.
    _charts: list[charts.Chart] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def reasons(self) -> dict[str, int]:
        return counts_by_reason(self.rows)

    @property
    def title(self) -> str:
        state = self.standing.state if self.standing else "final" if self.final else "proposed"
        return f"{self.month}, version {self.version} ({state})"

    def headline(self) -> list[tuple[str, str]]:
        return headline(self.figures)

    def charts(self) -> list[charts.Chart]:
        """The charts that have data: utilization, reasons, planned vs actual, trend, change (rendered
        on the first call)."""
        if self._charts is not None:
            return self._charts
        made = [
            charts.utilization_heatmap(self.utilization),
            charts.reasons_bar(self.reasons, self.figures.get("requests")),
            charts.planned_vs_actual_chart(self.actuals) if self.actuals is not None else None,
            charts.trend_chart(self.history),
            charts.change_chart(self.diff) if self.diff else None,
        ]
        self._charts = [chart for chart in made if chart is not None]
        return self._charts

    def reason_table(self) -> pd.DataFrame:
        """Top reasons with their share and one example of the specific explanation."""
        left_out = self.rows[self.rows["resource_id"].isna()]
        records = []
        for reason, count in list(self.reasons.items())[:TOP_REASONS]:
            details = left_out.loc[left_out["reason"] == reason, "reason_detail"].dropna() \
                if "reason_detail" in left_out else pd.Series(dtype=object)
            asked = left_out.loc[left_out["reason"] == reason, "requested_units"] \
                if "requested_units" in left_out else pd.Series(dtype="Int64")
            records.append({"reason": reason.replace("_", " "), "requests": format_count(count),
                            "share of requests": format_percent(count / len(self.rows)) if len(self.rows) else "–",
                            "requested units": format_count(asked.sum()) if asked.notna().all() else "–",
                            "example": str(details.iloc[0]) if len(details) else ""})
        return pd.DataFrame(records, columns=["reason", "requests", "share of requests", "requested units", "example"])

    def service_table(self) -> pd.DataFrame:
        """Utilization per service and region, formatted."""
        if self.utilization.empty:
            return pd.DataFrame()
        table = self.utilization.sort_values(["service", "region"])
        return pd.DataFrame({
            "service": table["service"], "region": table["region"],
            "resources": table["resources"].map(format_count),
            "capacity": table["capacity"].map(format_count),
            "planned units": table["planned_units"].map(format_count),
            "utilization": table["utilization"].map(format_percent),
        })

    def change_lines(self) -> list[str]:
        """What changed from the previous version, as sentences: the note, counts, leading figures."""
        if not self.diff:
            return []
        counts = self.diff["counts"]
        lines = [f"Why: {self.manifest.get('note') or 'no note'}",
                 f"{counts['moved']:,} moved, {counts['added']:,} added, {counts['removed']:,} removed, "
                 f"{counts['unchanged']:,} unchanged"]
        for name, change in leading_changes(self.diff).items():
            lines.append(f"{name.replace('_', ' ')}: {format_figure(name, change['from'])} -> "
                         f"{format_figure(name, change['to'])}")
        return lines

    def to_html(self) -> str:
        return render_html(self)

    def markdown_sections(self) -> dict[str, str]:
        """Short Markdown blocks for Dagster metadata, in reading order; each chart is its own block.

        The Dagster UI shows Markdown under 1,000 characters inline and longer Markdown (every
        embedded PNG) behind "[Show Markdown]": the tables stay short so that they show inline.
        """
        # Lists rather than tables: the UI's value column is narrow, and list items wrap where table cells are cut.
        sections = {"standing": self.standing.sentence()} if self.standing else {}
        sections["summary"] = "\n".join(f"- {label}: **{value}**" for label, value in self.headline())
        if self.manifest.get("note"):
            sections["why this version"] = str(self.manifest["note"])
        if self.diff:
            sections["change from the previous version"] = "\n".join(f"- {line}" for line in self.change_lines()[1:])
        per_service = self.service_summary()
        if not per_service.empty:
            sections["utilization by service"] = "\n".join(
                f"- {row.service}: **{row.utilization}** ({row.planned} of {row.capacity} units)"
                for row in per_service.itertuples(index=False))
        if self.reasons:
            sections["not allocated, by reason"] = "\n".join(
                f"- {reason.replace('_', ' ')}: **{format_count(count)}**" for reason, count in self.reasons.items())
        if (self.manifest.get("metrics") or {}).get(ADVICE_KEY):
            sections["capacity advice"] = advice_markdown(self.manifest["metrics"][ADVICE_KEY])
        for chart in self.charts():
            sections[f"chart: {chart.title}"] = f"**{chart.title}**\n\n{chart.markdown()}"
        for key, title in (("phase_seconds", "phase seconds"), ("solver_phase_seconds", "solver phase seconds")):
            phases = self.figures.get(key) or {}
            if phases:
                sections[title] = "\n".join(f"- {k.replace('_', ' ')}: {v:,.1f} s" for k, v in phases.items())
        return sections

    def service_summary(self) -> pd.DataFrame:
        """Planned utilization per service (the heat map has the regions), formatted."""
        if self.utilization.empty:
            return pd.DataFrame()
        table = self.utilization.groupby("service", as_index=False)[["capacity", "planned_units"]].sum()
        return pd.DataFrame({"service": table["service"], "capacity": table["capacity"].map(format_count),
                             "planned": table["planned_units"].map(format_count),
                             "utilization": (table["planned_units"] / table["capacity"].where(table["capacity"] != 0))
                             .map(format_percent)})


def version_view(store: ReportRecords, exports: ExportReports, month: str, version: int | None = None, *,
                 resources: pd.DataFrame | None = None, requests: pd.DataFrame | None = None) -> VersionView:
    """The view of a version (default: the final one of a finalized month, else the latest).

    `resources` (with monthly `capacity`) and `requests` default to the landed tables; the asset
    passes the exact ones it solved.
    """
    state = store.month(month)
    final_manifest = exports.final_manifest(month) if state["phase"] == PHASE_FINALIZED else None
    if version is None:
        version = int(final_manifest["version"]) if final_manifest else exports.latest_version(month)
        if version is None:
            raise LookupError(f"Month {month} has no versions yet.")
    final = final_manifest is not None and int(final_manifest["version"]) == version
    manifest: dict[str, Any] = final_manifest if final and final_manifest else exports.manifest(month, version)
    rows = exports.read_version(month, version)
    landed = landed_tables(exports.home, month)
    resources = resources if resources is not None else landed.resources
    requests = requests if requests is not None else landed.requests
    figures = figures_of(manifest, rows, resources, requests)
    standing = version_standing(store.requests(month), state, version,
                                exports.manifest(month, version).get("run_id"))
    view = VersionView(month=month, version=version, final=final, phase=state["phase"], manifest=manifest,
                       rows=rows, figures=figures, history=trend(store, month),
                       problems=[landed.problem] if landed.problem else [], standing=standing)
    if resources is not None:
        view.utilization = utilization_table(rows, resources, by="service_region")
        view.resource_utilization = utilization_table(rows, resources, by="resource")
        if landed.actuals is not None:
            view.actuals = planned_vs_actual(rows, resources, landed.actuals)
    previous = [v for v in exports.versions(month) if v < version]
    if previous:
        view.diff = exports.diff(month, previous[-1], version)
    view.audit = store.audit_entries(month)
    view.links = _links(exports, month, version, view.diff)
    return view


def refresh_standing(store: RecordsPort, exports: ExportReports, month: str) -> list[int]:
    """After a finalize or an unlock: every version's manifest records its standing, and the report of every
    version that is or was final is written again (a withdrawn final says so, and which version is final now).
    Returns the versions whose reports were rewritten."""
    requests = store.requests(month)
    state = store.month(month)
    for version in exports.versions(month):
        standing = version_standing(requests, state, version, exports.manifest(month, version).get("run_id"))
        exports.write_standing(month, version, standing.as_json())
    rewritten = [v for v in ever_final(requests) if v in exports.versions(month)]
    for version in rewritten:
        exports.write_report(month, version, version_view(store, exports, month, version).to_html())
    return rewritten


def standing_of(store: RecordsPort, exports: ExportReads, month: str, version: int | None = None, final: bool = False) -> dict[str, Any] | None:
    """The standing of the version an export reads (a given one, the final copy's, or the latest), as JSON."""
    if final:
        manifest = exports.final_manifest(month)
        version = int(manifest["version"]) if manifest else None
    elif version is None:
        version = exports.latest_version(month)
    if version is None or version not in exports.versions(month):
        return None  # the export itself says what is missing
    standing = version_standing(store.requests(month), store.month(month), version,
                                exports.manifest(month, version).get("run_id"))
    return standing.as_json()


def figures_of(manifest: dict[str, Any], rows: pd.DataFrame, resources: pd.DataFrame | None,
               requests: pd.DataFrame | None) -> dict[str, Any]:
    """The stored metrics, the solver's objective, bound and gap, and counts recomputed from the rows."""
    stored = dict(manifest.get("metrics") or {})
    solver = manifest.get("solver") or {}
    found = {**stored, **{k: solver.get(k) for k in ("objective", "bound", "status", "solve_seconds")}}
    found["gap"] = relative_gap(solver.get("objective"), solver.get("bound"))
    if found["gap"] is None:
        found["gap"] = solver.get("gap")
    if resources is not None:
        computed = version_metrics(rows, resources, requests)
        if computed["requested_units"] is None:
            computed.pop("requested_units")
        found.update(computed)
    return found


def leading_changes(diff: dict[str, Any], every: bool = False) -> dict[str, dict[str, Any]]:
    """The diff's metric changes that lead (objective, gap, success rate, counts), or all with every=True."""
    metrics = diff.get("metrics") or {}
    if every:
        return dict(sorted(metrics.items()))
    return {name: metrics[name] for name in DIFF_LEADING if name in metrics}


def audit_line(entry: dict[str, Any], tz=None) -> tuple[str, str, str, str]:
    """(time with zone, actor, action, what) of one audit entry, in words instead of JSON."""
    at = entry["at"]
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(tz)
    details = entry.get("details") or {}
    return (at.strftime("%Y-%m-%d %H:%M:%S %Z"), str(entry.get("actor") or "system"), str(entry["action"]),
            describe_action(str(entry["action"]), details))


def describe_action(action: str, details: dict[str, Any]) -> str:
    """One readable sentence for an audit entry's details."""
    d = details
    if action == "run":
        return f"version {d.get('version')} written" + (f"; note: {d['note']}" if d.get("note") else "")
    if action == "plan":
        return (f"planned {format_count(d.get('requests'))} requests" if d.get("requests") is not None
                else "planned")
    if action == "adjust":
        return adjustment_log.describe(d)
    if action == "params":
        after = d.get("changes") or d.get("after") or {}
        said = [*(f"set {k}={v}" for k, v in after.items() if v is not None),
                *(f"unset {k}" for k, v in after.items() if v is None)]
        return ", ".join(said) if said else "parameters"
    if action == "lock":
        return f"locked for {', '.join(d.get('designated') or d.get('admins') or [])} until {d.get('expires_at', '?')}"
    if action == "request":
        what = f"version {d.get('version')}" if d.get("kind") == "finalize" else ""
        return f"requested to {d.get('kind')} {what}".rstrip() + f" (request {d.get('request_id')}): {d.get('text')}"
    if action in ("approve", "reject"):
        verb = "approved" if action == "approve" else "rejected"
        return (f"{verb} request {d.get('request_id')} of {d.get('requested_by')} to {d.get('kind')}"
                + (f" version {d.get('version')}" if d.get("kind") == "finalize" else "")
                + (f": {d.get('reason')}" if d.get("reason") else ""))
    if action == "refused":
        return f"refused: {d.get('message', '')}"
    if action == "roles_adopted":
        return f"roles file {d.get('source')} accepted on first use"
    if action == "release":
        return f"released the lock of {d.get('holder')}"
    if action == "finalize":
        return f"finalized version {d.get('version')}, approved by {d.get('approver')}"
    if action == "unlock":
        return f"unlocked (was version {d.get('was_final_version')}), approved by {d.get('approver')}: {d.get('reason')}"
    if action == "export":
        return f"exported {d.get('rows', '?')} rows as {d.get('format', '?')} to {d.get('path', '?')}"
    if action == "alert":
        return f"{d.get('severity', '')} alert {d.get('rule', '')}: {d.get('message', '')}".strip()
    return ", ".join(f"{k}={_short(v)}" for k, v in d.items())


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _links(exports: ExportReports, month: str, version: int, diff: dict[str, Any] | None) -> dict[str, str]:
    folder = exports.version_path(month, version)
    links = {"version folder": str(folder), "manifest": str(exports.manifest_path(month, version)),
             "report": str(exports.report_path(month, version))}
    if diff and diff.get("path"):
        links["diff"] = diff["path"]
    docs = sorted(Path(exports.home, "data_docs", month).glob("**/local_site/index.html"))
    if docs:
        links["data docs"] = str(docs[0])
    return links


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:2px solid #1F4E78;padding-bottom:.2rem}
.sub{color:#555;margin-top:0} .cards{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem .8rem;min-width:8rem;background:#fafafa}
.card .v{font-size:1.3rem;font-weight:600} .card .k{font-size:.8rem;color:#555}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0} th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#1F4E78;color:#fff} td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start} figure{margin:0} figcaption{font-size:.8rem;color:#555}
.problem{color:#8a4b00} code{font-size:.8rem}
"""


def render_html(view: VersionView) -> str:
    """A self-contained page (inline CSS, charts as data URIs): open it anywhere, mail it, print it."""
    esc = html.escape
    charts_by_name = {chart.name: chart for chart in view.charts()}
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = view.manifest
    # The run that computed the version (a final copy's manifest once named the finalize run instead).
    run = view.standing.computed_by_run if view.standing else m.get("run_id")
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(view.title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{esc(view.title)}</h1>",
             f"<p class='sub'>written {esc(_when(m.get('created_at')))} by {esc(str(m.get('actor') or 'unknown'))}"
             f" (computed by run {esc(str(run or '–'))}); phase {esc(view.phase)}; report made {made}</p>"]
    if view.standing:
        css = "problem" if view.standing.state == STATE_WITHDRAWN else "sub"
        parts.append(f"<p class='{css}' data-standing='{esc(view.standing.state)}'><b>Standing:</b> "
                     f"{esc(view.standing.sentence())}</p>")
    if m.get("note"):
        parts.append(f"<p><b>Why this version:</b> {esc(str(m['note']))}</p>")
    if view.final:
        parts.append(f"<p><b>Official:</b> finalized by {esc(str(m.get('finalized_by')))}, approved by "
                     f"{esc(str(m.get('approved_by')))} at {esc(_when(m.get('finalized_at')))}"
                     + (f" (finalize run {esc(str(m['finalize_run_id']))})" if m.get("finalize_run_id") else "")
                     + "</p>")
    parts.append("<div class='cards'>" + "".join(
        f"<div class='card'><div class='v'>{esc(value)}</div><div class='k'>{esc(label)}</div></div>"
        for label, value in view.headline()) + "</div>")
    for problem in view.problems:
        parts.append(f"<p class='problem'>Note: {esc(problem)}</p>")

    parts.append("<h2>How full each service is</h2>")
    parts.append(_figure(charts_by_name.get("utilization_heatmap")))
    parts.append(_table(view.service_table(), numeric={"resources", "capacity", "planned units", "utilization"}))

    parts.append("<h2>Who was left out, and why</h2>")
    left = view.figures.get("requests", 0) - view.figures.get("allocated", 0)
    parts.append(f"<p>{format_count(left)} of {format_count(view.figures.get('requests'))} requests are not "
                 f"allocated ({format_figure('unallocated_ratio', view.figures.get('unallocated_ratio'))} "
                 f"unallocated, {format_count(view.figures.get('excluded', 0))} excluded by admins).</p>")
    parts.append(_figure(charts_by_name.get("unallocated_by_reason")))
    parts.append(_table(view.reason_table(), numeric={"requests", "share of requests", "requested units"}))

    parts.append(advice_html((m.get("metrics") or {}).get(ADVICE_KEY)))  # batch/advice.py

    parts.append("<h2>What changed since the previous version</h2>")
    if view.diff:
        parts.append(_figure(charts_by_name.get("change_from_previous")))
        parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in view.change_lines()) + "</ul>")
        moved = view.diff.get("moved") or []
        if moved:
            parts.append(f"<p>Moved requests (first {min(len(moved), TOP_MOVES)} of {len(moved):,}):</p>")
            parts.append(_table(pd.DataFrame(moved[:TOP_MOVES])))
    else:
        parts.append("<p>This is the month's first version.</p>")

    if view.actuals is not None:
        parts.append("<h2>Planned versus actual</h2>")
        parts.append(_figure(charts_by_name.get("planned_vs_actual")))

    parts.append("<h2>Trend across months</h2>")
    if "trend" in charts_by_name:
        parts.append(_figure(charts_by_name["trend"]))
    history = pd.DataFrame([{"month": h["month"], "version": h.get("version"),
                             "success rate": format_percent(h.get("success_rate")),
                             "utilization": format_percent(h.get("utilization")),
                             "objective": format_count(h.get("objective")), "gap": format_figure("gap", h.get("gap"))}
                            for h in view.history])
    parts.append(_table(history, numeric={"success rate", "utilization", "objective", "gap"}) if len(history)
                 else "<p>No earlier months.</p>")

    parts.append("<h2>Who did what</h2>")
    audit = pd.DataFrame([dict(zip(("when", "who", "action", "what"), audit_line(e, UTC))) for e in view.audit])
    parts.append(_table(audit) if len(audit) else "<p>No audit entries.</p>")

    parts.append("<h2>Files</h2><ul>" + "".join(
        f"<li>{esc(name)}: <a href='{esc(Path(path).as_uri())}'><code>{esc(path)}</code></a></li>"
        for name, path in view.links.items()) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part)


def _when(value: Any) -> str:
    """An ISO time stamp as people read it: to the minute, in UTC."""
    if not value:
        return "–"
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _figure(chart: charts.Chart | None) -> str:
    if chart is None:
        return ""
    return (f"<figure><img src='{chart.data_uri()}' alt='{html.escape(chart.title)}' "
            f"data-chart='{chart.name}'><figcaption>{html.escape(chart.title)}</figcaption></figure>")


def _table(frame: pd.DataFrame, numeric: set[str] | frozenset[str] = frozenset()) -> str:
    if frame.empty:
        return ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if col in numeric else ''}>{html.escape('' if v is None else str(v))}</td>"
                         for col, v in zip(frame.columns, record)) + "</tr>"
        for record in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
