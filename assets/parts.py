"""The month's solve fanned out as Dagster steps: one per independent part of the month.

A month splits into parts that share no request and no resource (by service and region, or any
connected component of the eligible pairs). Each part is its own step, so a multi-process or
multi-node executor (Celery, Kubernetes) spreads one month over several workers. Solve steps run
in the `solver` pool, whose size dagster.yaml sets to what the machine's cores carry.
"""

import warnings

import dagster as dg

import solvers
from assets.guards import begin_write, end_write, entered, refuse
from assets.partitions import monthly_partitions
from batch import plan as batch
from batch.metrics import ResourceUsage
from resources.dagster_resources import ControlStoreResource
from resources.execution import SOLVER_POOL

warnings.filterwarnings("ignore", category=dg.BetaWarning)



@dg.op(out=dg.DynamicOut(batch.PartTask))
def split_month(context: dg.OpExecutionContext, control: ControlStoreResource, capacity_plan: batch.CapacityPlan):
    """Refuse before anything is solved when the run may not write; else one task per part."""
    store = control.store()
    with entered(context, store, "run") as who:  # the run's check and the change-note rule in one transaction
        store.check_can_run(who.month, who.actor, who.note)
    params = who.solver_params()
    parts = batch.pack_parts(solvers.split_instance(capacity_plan.instance), who.max_parts(len(capacity_plan.instance.pairs)))
    shares = batch.time_shares(parts, params.time_limit_s)
    context.log.info(f"{who.month}: {len(parts)} parts, time limit {params.time_limit_s:g}s shared by size")
    for index, (part, share) in enumerate(zip(parts, shares, strict=True)):
        yield dg.DynamicOutput(batch.PartTask(index, len(parts), part, batch.part_params(params, share)),
                               mapping_key=f"part_{index}")


# The pool bounds concurrent solves; the tag routes them to the Celery `solver` queue when the
# Celery executor runs (engine/executor.py routes by pool as well).
@dg.op(pool=SOLVER_POOL, tags={"dagster-celery/queue": SOLVER_POOL})
def solve_part(context: dg.OpExecutionContext, task: batch.PartTask) -> batch.PartResult:
    """Solve one part with its share of the time limit; progress goes to the run's log."""
    label = f"part {task.index + 1}/{task.count}"

    def progress(seconds: float, objective: float, bound: float) -> None:
        # batch_cli/runs.py turns these lines into one progress bar per part.
        context.log.info(f"{label} solve {seconds:6.1f}s of {task.params.time_limit_s:.1f}s "
                         f"objective {objective:,.0f} bound {bound:,.0f}")

    progress(0.0, 0.0, 0.0)  # opens the part's progress bar in the CLI as the solve starts
    solve = solvers.solve  # imported, if this process has not yet (solvers/__init__.py), outside the measured solve
    try:
        with ResourceUsage().measure("solve") as usage:
            proposal = solve(task.instance, task.params, progress=progress)
    except (solvers.InfeasibleError, solvers.NoSolutionError) as exc:
        raise refuse(f"No feasible allocation for {context.partition_key} ({label}): {exc}") from None
    context.log.info(f"{label}: {len(task.instance.requests)} requests, objective {proposal.objective:,.0f}, "
                     f"gap {proposal.gap:.3%}, {proposal.solve_seconds:.1f}s")
    return batch.PartResult(proposal, dict(usage))


@dg.op
def merge_parts(context: dg.OpExecutionContext, control: ControlStoreResource,
                capacity_plan: batch.CapacityPlan, results: list[batch.PartResult]) -> batch.ProposalResult:
    """One proposal for the month: allocations concatenated, objectives and bounds added."""
    store = control.store()
    who = begin_write(context, store, "run")
    merged = solvers.merge_proposals(capacity_plan.instance, [r.proposal for r in results])
    usage = {
        "solve_wall_seconds": round(sum(r.usage.get("wall_seconds") or 0 for r in results), 3),
        "solve_cpu_seconds": round(sum(r.usage.get("cpu_seconds") or 0 for r in results), 3),
        "peak_rss_mb": max((r.usage.get("peak_rss_mb") or 0 for r in results), default=None),
    }
    end_write(context, store, "allocation_parts")
    return batch.ProposalResult(capacity_plan.instance, merged, who.params_record(), capacity_plan.fingerprint, usage)


@dg.graph_asset(partitions_def=monthly_partitions, group_name="monthly_batch")
def allocation_parts(capacity_plan: batch.CapacityPlan) -> batch.ProposalResult:
    """The month's solve, one step per independent part, merged into one proposal."""
    return merge_parts(capacity_plan, split_month(capacity_plan).map(solve_part).collect())
