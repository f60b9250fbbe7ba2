"""The month's solve fanned out as Dagster steps: one per independent part of the month.

A month splits into parts that share no request and no resource (by service and region, or any
connected component of the eligible pairs). Each part is its own step, so a multi-process or
multi-node executor (Celery, Kubernetes) spreads one month over several workers.
"""

import warnings
from dataclasses import dataclass, replace

import dagster as dg

from assets.partitions import monthly_partitions
from pipelines import batch
from pipelines.guards import begin_write, end_write, refuse
from pipelines.params import max_parts, params_snapshot, solver_params
from resources.control_store import ControlError
from resources.dagster_resources import ControlStoreResource
from solvers.schema import AllocationInstance, Proposal

warnings.filterwarnings("ignore", category=dg.BetaWarning)


@dataclass
class PartTask:
    """One independent part of a month and the share of the time limit it gets."""

    index: int
    count: int
    instance: AllocationInstance
    time_limit_s: float


@dg.op(out=dg.DynamicOut(PartTask))
def split_month(context: dg.OpExecutionContext, control: ControlStoreResource, capacity_plan: batch.CapacityPlan):
    """Refuse before anything is solved when the run may not write; else one task per part."""
    from solvers.decompose import split_instance

    store = control.store()
    who = begin_write(context, store, "run")
    try:
        store.check_can_run(who.month, who.actor, who.note)
    except ControlError as exc:
        raise refuse(str(exc)) from None
    stored = store.params(who.month)
    params = solver_params(stored)
    parts = batch.pack_parts(split_instance(capacity_plan.instance), max_parts(stored))
    shares = batch.time_shares(parts, params.time_limit_s)
    context.log.info(f"{who.month}: {len(parts)} parts, time limit {params.time_limit_s:g}s shared by size")
    for index, (part, share) in enumerate(zip(parts, shares, strict=True)):
        yield dg.DynamicOutput(PartTask(index, len(parts), part, share), mapping_key=f"part_{index}")


@dataclass
class PartResult:
    """A solved part and what solving it cost (wall and CPU seconds, peak memory)."""

    proposal: Proposal
    usage: dict


@dg.op
def solve_part(context: dg.OpExecutionContext, control: ControlStoreResource, task: PartTask) -> PartResult:
    """Solve one part with its share of the time limit; progress goes to the run's log."""
    from checks.monitoring import ResourceUsage
    from solvers import InfeasibleError, NoSolutionError, solve

    params = solver_params(control.store().params(context.partition_key))
    share = task.time_limit_s / params.time_limit_s
    params = replace(params, time_limit_s=task.time_limit_s,
                     deterministic_work=None if params.deterministic_work is None else params.deterministic_work * share)
    label = f"part {task.index + 1}/{task.count}"

    def progress(seconds: float, objective: float, bound: float) -> None:
        context.log.info(f"{label} solve {seconds:6.1f}s objective {objective:,.0f} bound {bound:,.0f}")

    try:
        with ResourceUsage().measure("solve") as usage:
            proposal = solve(task.instance, params, progress=progress)
    except (InfeasibleError, NoSolutionError) as exc:
        raise refuse(f"No feasible allocation for {context.partition_key} ({label}): {exc}") from None
    context.log.info(f"{label}: {len(task.instance.requests)} requests, objective {proposal.objective:,.0f}, "
                     f"gap {proposal.gap:.3%}, {proposal.solve_seconds:.1f}s")
    return PartResult(proposal, dict(usage))


@dg.op
def merge_parts(context: dg.OpExecutionContext, control: ControlStoreResource,
                capacity_plan: batch.CapacityPlan, results: list[PartResult]) -> batch.ProposalResult:
    """One proposal for the month: allocations concatenated, objectives and bounds added."""
    from solvers.decompose import merge_proposals

    store = control.store()
    merged = merge_proposals(capacity_plan.instance, [r.proposal for r in results])
    usage = {
        "solve_wall_seconds": round(sum(r.usage.get("wall_seconds") or 0 for r in results), 3),
        "solve_cpu_seconds": round(sum(r.usage.get("cpu_seconds") or 0 for r in results), 3),
        "peak_rss_mb": max((r.usage.get("peak_rss_mb") or 0 for r in results), default=None),
    }
    end_write(context, store, "allocation_parts")
    return batch.ProposalResult(capacity_plan.instance, merged,
                                params_snapshot(solver_params(store.params(context.partition_key))),
                                capacity_plan.fingerprint, usage)


@dg.graph_asset(partitions_def=monthly_partitions, backfill_policy=dg.BackfillPolicy.multi_run(1),
                group_name="monthly_batch")
def allocation_parts(capacity_plan):
    """The month's solve, one step per independent part, merged into one proposal."""
    return merge_parts(capacity_plan, split_month(capacity_plan).map(solve_part).collect())
