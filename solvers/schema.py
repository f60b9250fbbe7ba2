"""Schema of the allocation instance given to the solver and the proposal it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the CLI imports this module, and pandas takes 0.4-0.6 s to import
    import pandas as pd

DEFAULT_WEIGHTS: dict[int, int] = {1: 1000, 2: 300, 3: 100, 4: 30, 5: 10}

# Reasons an unallocated request may carry (SPEC §3); the solver picks the most specific.
REASON_NO_ELIGIBLE_RESOURCE = "no_eligible_resource"
REASON_WINDOW_UNAVAILABLE = "window_unavailable"
REASON_CAPACITY_EXHAUSTED = "capacity_exhausted"
REASON_EXCLUDED = "excluded"
REASON_PIN_CONFLICT = "pin_conflict"
# Every eligible resource had room, but each pair's cost is at least the request's value.
REASON_COST_EXCEEDS_VALUE = "cost_exceeds_value"

STATUS_ALLOCATED = "allocated"
STATUS_UNALLOCATED = "unallocated"
STATUS_PINNED = "pinned"
STATUS_EXCLUDED = "excluded"

# Why a solve stopped (Proposal.stop_reason).
STOP_OPTIMAL = "optimal"  # the allocation is proven optimal (objective == bound)
STOP_TOLERANCE = "gap_tolerance"  # proven within SolverParams.gap_tolerance of the bound
STOP_TIME_LIMIT = "time_limit"  # SolverParams.time_limit_s ran out first
STOP_WORK_BUDGET = "deterministic_budget"  # SolverParams.deterministic_work ran out first

# Where a bound comes from (Proposal.bound_kind).
BOUND_CPSAT = "cp-sat"  # CP-SAT's proven bound of a component's exact model
BOUND_LP = "lp"  # the LP relaxation (HiGHS), solved to optimality
BOUND_LAGRANGIAN = "lagrangian"  # capacities relaxed with prices (valid for any prices >= 0)
BOUND_TRIVIAL = "best-pair"  # every request on its best pair, capacity ignored

REQUEST_COLUMNS = [
    "request_id", "customer_id", "service", "region", "units", "priority",
    "must_allocate", "preferred_resource_id", "earliest_date", "latest_date",
]
RESOURCE_COLUMNS = ["resource_id", "name", "service", "region", "capacity"]
PAIR_COLUMNS = ["request_id", "resource_id", "cost", "units"]
ALLOCATION_COLUMNS = ["request_id", "resource_id", "units", "cost", "status", "reason"]
# Extra, human-readable column beside ALLOCATION_COLUMNS: why a request is unallocated in
# words (e.g. which eligible resources were full and how much room they had left).
DETAIL_COLUMN = "detail"


@dataclass(frozen=True)
class SolverParams:
    """Batch parameters that steer the solver; stored per month and snapshotted per version."""

    weights: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    time_limit_s: float = 30.0
    seed: int = 0
    workers: int = 2
    default_cost: int = 10
    # Deterministic work budget (CP-SAT deterministic seconds plus charged Python work). Set: runs
    # repeat exactly (one CP-SAT worker, deterministic limits) and time_limit_s only
    # bounds the wall clock. None: the wall clock (time_limit_s) decides and CP-SAT runs its
    # parallel portfolio: better allocations, but two runs may differ.
    deterministic_work: float | None = None
    # The solve ends as soon as its allocation is proven within this relative gap of its bound
    # ((bound - objective) / max(1, |bound|)): CP-SAT's own gap limit inside components, the
    # components' and the month's objective against their bounds between phases. 0: run to
    # the time limit or a proven optimum.
    gap_tolerance: float = 1e-4
    # Weight of keeping a request on the resource the previous version gave it (a re-run).
    # None (default, strict): a request keeps its previous resource unless the change requires
    # it to move (excluded, pinned elsewhere, its pair gone, or displaced from a resource that
    # the pins and kept requests overfill); only the others are re-optimised, so a re-run with
    # the same inputs moves nothing. A number: objective units a request earns by staying
    # (0: no stability at all); the solver may move it when that gains more.
    stability: float | None = None


@dataclass
class AllocationInstance:
    """One month's solver input: requests, resources with monthly capacity, eligible pairs.

    requests:  REQUEST_COLUMNS (units int > 0, priority 1..5, must_allocate bool)
    resources: RESOURCE_COLUMNS (capacity = monthly capacity in units, int >= 0)
    pairs:     PAIR_COLUMNS, one row per allowed (request, resource), with the cost and the
               capacity units that pair consumes
    pins:      request_id -> resource_id that admins fixed (hard)
    exclusions: request_ids removed by admins
    previous:  request_id -> resource_id of the previous version (warm start, stability)
    window_blocked: request_ids whose only same-service-and-region resources have no
               availability inside the request's date window (for the reason)
    """

    month: str
    requests: pd.DataFrame
    resources: pd.DataFrame
    pairs: pd.DataFrame
    pins: dict[str, str] = field(default_factory=dict)
    exclusions: set[str] = field(default_factory=set)
    previous: dict[str, str] = field(default_factory=dict)
    window_blocked: set[str] = field(default_factory=set)


@dataclass
class Proposal:
    """The solver's answer: one row per request plus the figures admins judge it by."""

    allocations: pd.DataFrame  # ALLOCATION_COLUMNS, one row per request
    objective: float
    bound: float
    gap: float  # relative: (bound - objective) / max(1, |bound|)
    status: str  # OPTIMAL | FEASIBLE
    solve_seconds: float
    model_size: dict[str, int] = field(default_factory=dict)
    parts: int = 1
    conflicts: list[str] = field(default_factory=list)
    # Why the solve stopped: STOP_OPTIMAL, STOP_TOLERANCE, STOP_TIME_LIMIT or STOP_WORK_BUDGET.
    stop_reason: str = ""
    # Which bound `bound` is: BOUND_* kinds joined by "+" when components used different ones
    # (e.g. "cp-sat+lp"), and why a weaker one was used (empty when nothing failed).
    bound_kind: str = ""
    bound_note: str = ""
    # Against instance.previous (solvers.churn.churn): requests and units moved.
    churn: dict[str, float] = field(default_factory=dict)
    # Wall seconds per phase (compile, greedy, bound, model_build, search, explain).
    phase_seconds: dict[str, float] = field(default_factory=dict)
