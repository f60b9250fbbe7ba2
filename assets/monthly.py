"""The monthly asset graph: landed inputs to the official, final allocation."""


import math
import time
import warnings
from dataclasses import replace
from typing import Any

import dagster as dg
import pandas as pd

from assets.guards import begin_write, claim_request, end_write, entered, refuse, take_month
from assets.partitions import monthly_partitions
from assets.parts import allocation_parts
from assets.view_links import view_links
from batch import plan as batch
from batch.advice import advice_record, month_advice
from batch.advice_text import ADVICE_KEY, advice_lines
from batch.alert_rules import AlertThresholds
from batch.audit import ANCHOR_METADATA, anchor_text
from batch.charts import chart_path
from batch.errors import ControlError
from batch.health import keep_figures
from batch.identity import IdentityError
from batch.inputs import InputError, InputTables, load_landing
from batch.landing import require_inputs
from batch.lifecycle import carry_out_finalize
from batch.metrics import relative_gap, utilization_records, version_metrics
from batch.month_records import MonthRecords
from batch.months import previous_month
from batch.report import VersionView, refresh_standing, version_view
from batch.roles import RoleError
from checks import asset_checks, names
from checks.table_metadata import table_metadata
from resources.advice_files import write_advice_files
from resources.dagster_resources import ControlStoreResource, StorageResource
from resources.settings import known_view_origin
from resources.storage import ALLOCATION_SCHEMA
from solvers import build_instance

warnings.filterwarnings("ignore", category=dg.BetaWarning)
# A check spec's partitions_def is a preview in Dagster 1.13: it lets the UI show a check's status per month.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

GROUP = "monthly_batch"
ALLOCATION_TABLE_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn(field.name, str(field.type), description=None if field.nullable else "never empty")
    for field in ALLOCATION_SCHEMA])
INPUTS_MEET_EXPECTATIONS = "inputs_meet_expectations"
# Short headers: the UI's metadata column is narrow and cuts a wide table off on the right.
DEMAND_COLUMNS = {"demand_units": "demand", "must_allocate_units": "must", "capacity_units": "capacity",
                  "demand_ratio": "ratio"}


def _asset(**kwargs: Any):
    """Every monthly asset: partitioned by month. Without a backfill policy a backfill makes one run
    per month, tagged dagster/partition like every other run, so the queue's one-run-per-month
    limit sees backfill runs too (a multi-run policy tags only a partition range)."""
    return dg.asset(partitions_def=monthly_partitions, group_name=GROUP, **kwargs)


@_asset()
def landed_inputs(context: dg.AssetExecutionContext, control: ControlStoreResource,
                  storage: StorageResource):
    """The month's input tables as they landed under landing/YYYY-MM/."""
    store = control.store()
    begin_write(context, store, "plan")
    started = time.perf_counter()
    try:
        require_inputs(storage.home_path(), context.partition_key)  # the sentence `batch-admin run` says
        tables = load_landing(storage.home_path(), context.partition_key)
    except (ControlError, InputError) as exc:
        raise refuse(str(exc)) from None
    counts = {name: (0 if getattr(tables, name) is None else len(getattr(tables, name)))
              for name in ("resources", "requests", "availability", "eligibility", "actuals")}
    end_write(context, store, "landed_inputs")
    return dg.Output(tables, metadata={
        **{f"rows_{k}": v for k, v in counts.items()},
        "fingerprint": tables.fingerprint,
        "load_seconds": round(time.perf_counter() - started, 3),
    })


@_asset(check_specs=asset_checks.specs("validated_inputs", {
    INPUTS_MEET_EXPECTATIONS: "Every input rule of SPEC §2 holds (great-expectations suites)."}, True, monthly_partitions))
def validated_inputs(context: dg.AssetExecutionContext, control: ControlStoreResource,
                     storage: StorageResource, landed_inputs: InputTables):
    """The landed tables after every input rule held."""
    store = control.store()
    begin_write(context, store, "plan")
    started = time.perf_counter()
    docs = storage.home_path() / "data_docs" / context.partition_key
    # Deferred: great-expectations takes ~2 s to import, which every process loading the code
    # location (code servers, the daemon, sensors) would pay although only this step needs it.
    from checks.expectations import validate_inputs

    report = validate_inputs(landed_inputs, data_docs_dir=docs)
    metadata: dict[str, Any] = {"month": context.partition_key, "report": dg.MetadataValue.json(report.as_metadata()),
                "checked_rules": report.checked_rules,
                "validate_seconds": round(time.perf_counter() - started, 3), **view_links(context.partition_key)}
    if report.data_docs_path:
        metadata["data_docs"] = dg.MetadataValue.path(str(report.data_docs_path))
    if not report.success:
        yield dg.AssetCheckResult(check_name=INPUTS_MEET_EXPECTATIONS, passed=False,
                                  severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
                                  description=f"{context.partition_key}: {report.summary().splitlines()[0]}")
        raise dg.Failure(description=report.summary(), metadata=metadata, allow_retries=False)
    end_write(context, store, "validated_inputs")
    yield dg.Output(landed_inputs, metadata=metadata)
    yield dg.AssetCheckResult(check_name=INPUTS_MEET_EXPECTATIONS, passed=True, metadata=metadata,
                              description=f"{context.partition_key}: all {report.checked_rules} input rules hold")


@_asset()
def capacity_plan(context: dg.AssetExecutionContext, control: ControlStoreResource,
                  storage: StorageResource, validated_inputs: InputTables) -> dg.Output:
    """Preview: demand against capacity per service and region, conflicts, expected allocation."""
    store = control.store()
    who = begin_write(context, store, "plan")
    started = time.perf_counter()
    month = context.partition_key
    params = who.solver_params()
    exports = storage.exports()
    previous_final = (exports.read_final(previous_month(month))
                      if exports.final_manifest(previous_month(month)) else None)
    latest = exports.latest_version(month)
    tables = validated_inputs
    instance = build_instance(
        month, tables.requests, tables.resources, availability=tables.availability,
        eligibility=tables.eligibility, params=params, previous_final=batch.final_map(previous_final),
        pins=dict(who.pins), exclusions=set(who.exclusions),
        previous_version=batch.final_map(exports.read_version(month, latest)) if latest else None,
    )
    expected = batch.expected_allocation(instance, params)
    allocated = expected["resource_id"].notna()
    plan = batch.CapacityPlan(
        month=month, instance=instance, by_group=batch.demand_vs_capacity(instance),
        conflicts=batch.conflicts(instance),
        fingerprint=tables.fingerprint,
        expected={"allocated": int(allocated.sum()),
                  "success_rate": round(float(allocated.mean()) if len(expected) else 0.0, 4)},
    )
    summary = plan.summary()
    # Where one more unit of capacity serves most, against the expected allocation (docs/model.md).
    summary[ADVICE_KEY] = advice_lines(advice_record(month_advice(instance, params, expected, params.time_limit_s)))
    summary["plan_seconds"] = round(time.perf_counter() - started, 3)
    try:
        store.record_plan(month, who.actor, who.run_id, summary)
    except ControlError as exc:
        raise refuse(str(exc)) from None
    end_write(context, store, "capacity_plan")
    return dg.Output(plan, metadata={
        **{key: value for key, value in summary.items() if key != ADVICE_KEY},
        ADVICE_KEY: advice_metadata(summary[ADVICE_KEY]),
        "demand_vs_capacity": table_metadata(plan.by_group.rename(columns=DEMAND_COLUMNS)),
        "conflicts_preview": table_metadata(plan.conflicts) if len(plan.conflicts) else "none",
    })


@_asset(check_specs=asset_checks.specs("allocation_proposal", asset_checks.PROPOSAL_CHECKS, True, monthly_partitions))
def allocation_proposal(context: dg.AssetExecutionContext, control: ControlStoreResource,
                        allocation_parts: batch.ProposalResult):
    """The solver's proposal for the month, checked before it becomes a version."""
    store = control.store()
    who = begin_write(context, store, "run")
    proposal = allocation_parts.proposal
    params = who.solver_params()
    advice = month_advice(allocation_parts.instance, params, proposal.allocations, params.time_limit_s)
    end_write(context, store, "allocation_proposal")
    gap = relative_gap(proposal.objective, proposal.bound)
    yield dg.Output(replace(allocation_parts, advice=advice), metadata={
        ADVICE_KEY: advice_metadata(advice_lines(advice_record(advice))),
        "status": proposal.status, "objective": round(proposal.objective),
        **({"bound": round(proposal.bound)} if math.isfinite(proposal.bound) else {}),
        **({"gap_pct": round(100 * gap, 3)} if gap is not None else {}),
        "solve_seconds": round(proposal.solve_seconds, 1),
        "parts": proposal.parts, "conflicts": len(proposal.conflicts),
        **{f"model_{k}": v for k, v in proposal.model_size.items()},
    })
    yield from asset_checks.proposal_results(allocation_parts.instance, proposal.allocations, context.partition_key)


# A multi-asset only for can_subset: a trend check without trailing months is then not yielded, and
# Dagster shows it skipped (a plain @asset requires every check result and would show it passed).
@dg.multi_asset(specs=[dg.AssetSpec("allocation_export", deps=[allocation_proposal], description="A new immutable version of the month's "
                                    "allocation: Parquet rows, manifest and HTML report.")],
                check_specs=asset_checks.specs("allocation_export", asset_checks.TREND_CHECKS, False, monthly_partitions),
                partitions_def=monthly_partitions, group_name=GROUP, can_subset=True)
def allocation_export(context: dg.AssetExecutionContext, control: ControlStoreResource,
                      storage: StorageResource, allocation_proposal: batch.ProposalResult):
    """A new immutable version of the month's allocation: Parquet rows and manifest."""
    store = control.store()
    with entered(context, store, "run") as who:
        anchor = store.audit_anchor()  # the chain's head before this version, kept in its manifest
    exports = storage.exports()
    version = exports.next_version(who.month)
    proposal = allocation_proposal.proposal
    instance = allocation_proposal.instance
    rows = batch.allocation_rows(who.month, version, instance, proposal)
    metrics = version_metrics(rows, instance.resources, instance.requests)
    # Duration of each phase of this run so far, CPU time and peak memory of the solve (SPEC §7).
    metrics["phase_seconds"] = batch.phase_seconds(context.instance.get_run_step_stats(who.run_id))
    metrics.update(allocation_proposal.usage)
    metrics["model_size"] = proposal.model_size
    # Capacity is not in the rows: the workbook's utilization chart reads it from the manifest.
    metrics["utilization_by_service_region"] = utilization_records(rows, instance.resources)
    metrics[ADVICE_KEY] = advice_record(allocation_proposal.advice)
    solver = {"status": proposal.status, "objective": proposal.objective, "bound": proposal.bound,
              "gap": relative_gap(proposal.objective, proposal.bound), "solve_seconds": proposal.solve_seconds,
              "model_size": proposal.model_size, "parts": proposal.parts,
              "conflicts": proposal.conflicts, "stop_reason": proposal.stop_reason,
              "bound_kind": proposal.bound_kind, "bound_note": proposal.bound_note, "churn": proposal.churn,
              # The solve's own phases (compile, greedy, bound, model_build, search, explain), summed over parts.
              "solver_phase_seconds": proposal.phase_seconds}
    info = exports.write_version(who.month, version, rows, {
        "run_id": who.run_id, "actor": who.actor, "note": who.note,
        "parameters": allocation_proposal.params, "input_fingerprint": allocation_proposal.fingerprint,
        "status": "proposed", "solver": solver, "metrics": metrics, "audit_anchor": anchor,
    })
    write_advice_files(info.path, allocation_proposal.advice)
    try:
        with store.unit():  # the version recorded, and what its report reads of the store, in one transaction
            store.record_version(who.month, version, who.actor, who.note, who.run_id, str(info.path),
                                 allocation_proposal.params,
                                 {**metrics, **{k: v for k, v in solver.items() if k != "conflicts"}},
                                 allocation_proposal.fingerprint)
            records = MonthRecords.read(store, who.month)
    except ControlError as exc:
        raise refuse(str(exc)) from None
    keep_figures(exports, who.month, (version, False))  # what the admin view and `status` read of it first
    view = version_view(records, exports, who.month, version, resources=instance.resources, requests=instance.requests)
    exports.write_report(who.month, version, view.to_html())
    checks, skipped = asset_checks.trend_results(
        who.month, view.figures, batch.trailing_metrics(records, who.month),
        view.resource_utilization.to_dict("records"), AlertThresholds.from_params(who.params))
    for name, reason in skipped.items():
        context.log.info(f"{name} {reason}")
    end_write(context, store, "allocation_export")
    # The version is written by the export store itself (versioned Parquet): nothing for an IO manager.
    yield dg.MaterializeResult(asset_key="allocation_export",
                               metadata={**version_metadata(view), **anchor_metadata(records.audit_anchor()),
                                         **{f"check {k}": v for k, v in skipped.items()}})
    selected = {key.name for key in context.selected_asset_check_keys}
    yield from (result for result in checks if result.check_name in selected)


def version_metadata(view: VersionView, view_url: str | None = None) -> dict[str, Any]:
    """A version as Dagster metadata, readable without a click: the story in short Markdown, the report's
    tables as tables, its charts as images, a few rounded figures the UI plots across partitions, row
    count, column schema and links to the files.

    The Dagster UI shows Markdown under 1,000 characters and every table inline; an embedded PNG is far
    longer, so a chart is inline only as a link to the admin view's copy of the same image (`view_url`,
    default: resources.settings.known_view_origin, BATCH_ADMIN_ORIGIN or the BATCH_ADMIN_VIEW_URL `batch-admin ui`
    sets, as the metadata's links to the view); without a view it stays embedded and
    folded behind "Show Markdown"."""
    view_url = (view_url if view_url is not None else known_view_origin() or "").rstrip("/")
    metadata: dict[str, Any] = {"dagster/row_count": len(view.rows), "dagster/column_schema": ALLOCATION_TABLE_SCHEMA,
                                "version": view.version}
    if view.standing:
        metadata["state"] = dg.MetadataValue.text(view.standing.state)
    metadata.update({name: dg.MetadataValue.md(text) for name, text in view.markdown_sections().items()})
    if not view.utilization.empty:  # the heat map's figures as a table
        metadata["utilization by service and region"] = table_metadata(view.service_table())
    if view.reasons:  # the report's reasons table: counts, shares, units asked and an example
        metadata["not allocated, by reason"] = table_metadata(view.reason_table())
    if "capacity advice" in metadata:  # the same lines as the report, where Markdown would be folded
        metadata["capacity advice"] = advice_metadata(advice_lines((view.manifest.get("metrics") or {}).get(ADVICE_KEY)))
    for chart in view.charts():
        url = f"{view_url}{chart_path(view.month, view.version, chart.name)}" if view_url else None
        metadata[f"chart: {chart.title}"] = dg.MetadataValue.md(f"**{chart.title}**\n\n{chart.markdown(url)}")
    for key, digits in (("success_rate", 1), ("utilization", 1), ("gap", 3)):
        if view.figures.get(key) is not None:
            metadata[f"{key} %"] = dg.MetadataValue.float(round(100 * float(view.figures[key]), digits))
    if view.figures.get("objective") is not None:
        metadata["objective"] = dg.MetadataValue.int(round(float(view.figures["objective"])))
    for name, path in view.links.items():  # files for data engineers; the links people follow go to the view
        metadata[f"{name} file" if name == "report" else name] = dg.MetadataValue.path(path)
    return {**metadata, **view_links(view.month, view.version)}


def advice_metadata(lines: list[str]) -> dg.MetadataValue:
    """The capacity advice's lines (batch.advice.advice_lines) as a one-column table, which the UI shows
    inline and wraps: as Markdown, the advice is over 1,000 characters and folded behind "Show Markdown"."""
    if not lines:
        return dg.MetadataValue.md("no capacity advice (its LP was not solved)")
    return table_metadata(pd.DataFrame({"where more capacity serves most": lines}))


class FinalizeConfig(dg.Config):
    """The approved finalize request to carry out (`batch-admin approve ID` makes one)."""

    request_id: str


def anchor_metadata(anchor: dict[str, Any]) -> dict[str, Any]:
    """The audit chain's head, kept in Dagster's event log too (`audit --verify` reads it back)."""
    return {ANCHOR_METADATA: dg.MetadataValue.text(anchor_text(anchor))}


@_asset(deps=[allocation_export], check_specs=asset_checks.specs("final_allocation", {
    names.FINAL_ALLOCATION_MATCHES_APPROVED_VERSION: "The official export holds exactly the rows of the approved "
                                                     "version."}, True, monthly_partitions))
def final_allocation(context: dg.AssetExecutionContext, config: FinalizeConfig,
                     control: ControlStoreResource, storage: StorageResource):
    """The official allocation of a finalized month: written only by finalization."""
    exports = storage.exports()
    month = context.partition_key
    store = control.store()
    claim_request(context, store, config.request_id, month)
    try:
        take_month(context, store)  # never beside a run of the same month
        try:
            manifest = carry_out_finalize(store, exports, config.request_id, month, context.run.run_id)
        finally:
            store.release_lease(month, context.run.run_id)
    except (ControlError, RoleError, IdentityError) as exc:
        raise refuse(str(exc)) from None
    version = int(manifest["version"])
    # Every version's standing changes (this one is final now, an earlier final says it was withdrawn).
    refresh_standing(store, exports, month)
    view = version_view(store, exports, month, version)
    yield dg.MaterializeResult(metadata={
        **version_metadata(view), "finalized by": str(manifest.get("finalized_by")),
        "approver": str(manifest.get("approved_by")), "request": config.request_id,
        **anchor_metadata(store.audit_anchor()),
        "official copy": dg.MetadataValue.path(str(exports.final_path(month)))})
    yield asset_checks.final_matches_result(exports.read_final(month), exports.read_version(month, version), version,
                                            month)


monthly_assets = [landed_inputs, validated_inputs, capacity_plan, allocation_parts, allocation_proposal,
                  allocation_export, final_allocation]
