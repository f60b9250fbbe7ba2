"""solve(): greedy warm start, then each independent component of the month by CP-SAT (LNS when huge)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from ortools.sat.python import cp_model

from solvers import ejection, tabu
from solvers.bound import (
    BoundError,
    LagrangianBound,
    LpRelaxation,
    lagrangian_bound,
    lp_relaxation,
)
from solvers.churn import churn
from solvers.compiled import NO_PAIR, CompiledInstance, compile_instance
from solvers.components import component_labels
from solvers.cpsat import SOLVED, SearchLimits, SubSolve, solve_part, sub_pairs
from solvers.explain import allocation_table
from solvers.gap import relative_gap
from solvers.greedy import greedy_fill
from solvers.lns import improve
from solvers.schema import (
    BOUND_CPSAT,
    BOUND_LAGRANGIAN,
    BOUND_LP,
    BOUND_TRIVIAL,
    STOP_OPTIMAL,
    STOP_TIME_LIMIT,
    STOP_TOLERANCE,
    STOP_WORK_BUDGET,
    AllocationInstance,
    Proposal,
    SolverParams,
)

# Components up to this many pairs get one CP-SAT model (hinted with the greedy) for their whole
# share of the time; larger ones get LP rounding plus LNS.
FULL_MODEL_MAX_PAIRS = 150_000
# The wall clock stops a deterministic run only past this multiple of the time limit (a loaded
# machine); before that, deterministic limits alone decide, so runs repeat exactly.
WALL_SAFETY = 1.2
# A month where no allocation serving every must_allocate request is found within the time
# limit keeps searching for a first one up to this multiple of the limit before giving up.
FEASIBILITY_SAFETY = 2.0
# Wall time kept back for the allocation table and explanations, per request.
EXPLAIN_SECONDS_PER_REQUEST = 2e-5
# Components without must_allocate requests get CP-SAT's first look only up to this many pairs;
# larger ones go to the LNS at once. Measured on the 20,000-request month at 20 s (20 components
# of 10,000 pairs, under load): 0.37-0.46 % below the LP with the first look, 0.33 % without (it
# cost ~2 s of model building and ~2 s of search that the LNS uses better); the demo month's
# components (up to 3,700 pairs) are proven within the tolerance by it.
FIRST_LOOK_MAX_PAIRS = 5_000
# With a gap tolerance, CP-SAT's first look at a component is capped at this much wall (or
# deterministic) time: the month check after phase 1 often finds the month within the tolerance
# (the gaps left add up within it), and the components that are not get phase 2's time. Enough
# to prove a small component optimal; a longer look is mostly wasted, as phase 2 starts its
# search from the relaxation's rounding and keeps CP-SAT's allocation only when that is better.
# Measured on the `make demo` months (data and solver seed 7: 2026-12, 2027-01, 2027-02; 15
# components of up to 363 requests, each with must_allocate requests): once the first
# components had used the month's slack, the later ones looked with a gap limit of 0 for
# 0.05 s + 1e-4 s per pair (0.10-0.45 s each, 1.4 s of a 2.7 s solve) and ended merely FEASIBLE.
FIRST_LOOK_SECONDS = 0.02
# Share of a large component's time given to placing its must_allocate requests first.
MUST_SHARE = 0.5
# Share of a component's time CP-SAT gets first (with and without must_allocate requests); the
# rest goes to LP rounding and LNS unless CP-SAT proves the component optimal.
CPSAT_SHARE_WITH_MUST = 0.2
CPSAT_SHARE_WITHOUT_MUST = 0.1
# Deterministic time of one LNS re-solve. Measured at 20 s: tight all-must_allocate months (GAP
# types D) gain from larger re-solves (chu d20100 1.37 % -> 1.04 %, yagiura d40400 1.33 % ->
# 0.95 % with 0.05), months without must_allocate from many small ones: on a 1,000 x 50 component
# of the 20,000-request month, objective gained per wall second with 0.005 / 0.01 / 0.02 / 0.05:
# 7,900 / 6,100 / 3,600 / 2,700 (one thread, equal work).
LNS_SUB_TIME = 0.005
LNS_SUB_TIME_WITH_MUST = 0.05
# Tight components (at least TABU_MIN_MUST_SHARE of their requests must_allocate, at most
# TABU_MAX_REQUESTS requests) are improved by a tabu search (solvers/tabu.py) instead of the LNS:
# it finds the long chains of moves that exact re-solves of a few resources miss. Measured at
# 20 s on five GAP type D instances: mean gap 0.82 % (LNS) -> 0.54 %, worst 1.05 % -> 0.79 %;
# LNS then tabu, half each, was worse than the tabu alone.
TABU_MAX_REQUESTS = 2000
TABU_MIN_MUST_SHARE = 0.5
# At most this share of a loose component's search time goes to the ejection chains before the LNS.
EJECTION_SHARE = 0.3
# Phase 2 goes round the components outside their slack at most this many times, while more
# than this share of the time limit (or of the work budget) is left.
PHASE2_ROUNDS = 4
PHASE2_MIN_LEFT = 0.02
# A component's gap limit in CP-SAT's first look, as a multiple of its share of the slack left.
PHASE1_SLACK_FACTOR = 2.0
# Deterministic work charged for the LP relaxation, per pair (deterministic mode only).
LP_WORK_PER_PAIR = 5e-6
# The LP relaxation (bound and rounding) gets at most this share of the time left; past it, or
# above LP_MAX_PAIRS usable pairs, the capacity-relaxed Lagrangian bound stands in (at most
# LAGRANGIAN_SHARE of the time left), with the greedy at its prices as rounding. Measured: at
# 1,000,000 pairs HiGHS took 19.8 s, 300 subgradient steps 1.4 s and came within 0.0014 % of the
# LP; on the 20,000-request month at 20 s the search ended 0.27 % below the LP from the
# Lagrangian prices and 0.40 % from the LP rounding (one run each, under load).
LP_SHARE = 0.3
LP_MAX_PAIRS = 150_000
LAGRANGIAN_SHARE = 0.1

Progress = Callable[[float, float, float], None]


class InfeasibleError(RuntimeError):
    """must_allocate requests that no allocation can serve (proven by CP-SAT); request_ids names them."""

    def __init__(self, message: str, request_ids: list[str]):
        super().__init__(message)
        self.request_ids = request_ids


class NoSolutionError(RuntimeError):
    """No allocation serving every must_allocate request found in time (not proven infeasible)."""

    def __init__(self, message: str, request_ids: list[str]):
        super().__init__(message)
        self.request_ids = request_ids


@dataclass
class Budget:
    """The time left for the search: deterministic work (exact repeats) or the wall clock."""

    deterministic: bool
    started: float
    wall_end: float  # when the search should be over (wall mode), before explanations
    safety_end: float  # the wall clock's hard stop
    work: float = math.inf  # deterministic mode: work units left

    def left(self) -> float:
        if self.deterministic:
            return max(self.work, 0.0)
        return max(self.wall_end - time.perf_counter(), 0.0)

    def limits(self, share: float, params: SolverParams, gap_limit: float = 0.0) -> SearchLimits:
        # Deterministic mode runs one CP-SAT worker (solvers/cpsat.py), which gets the whole share.
        return SearchLimits(
            deterministic_time=max(share, 0.01),
            wall_seconds=max(share if not self.deterministic else self.safety_end - time.perf_counter(), 0.01),
            seed=params.seed,
            workers=params.workers,
            deterministic=self.deterministic,
            gap_limit=gap_limit,
        )

    def charge(self, work: float) -> None:
        self.work -= work


# Progress is reported at most once per PROGRESS_INTERVAL_S of the solve (the final report always):
# in a run each report is a line of the run's event log, a database write, and the LNS improves
# a small month hundreds of times a second (the demo month of `make demo` wrote 35 progress lines in its 2.6 s solve; throttled, 7).
PROGRESS_INTERVAL_S = 0.5


class _Throttle:
    """The caller's progress callback, called at most once per PROGRESS_INTERVAL_S (thread-safe enough:
    the LNS's threads report under its lock, the other searches from the solving thread)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.next_at = -math.inf

    def __call__(self, seconds: float, objective: float, bound: float) -> None:
        if seconds >= self.next_at:
            self.next_at = seconds + PROGRESS_INTERVAL_S
            self.progress(seconds, objective, bound)

    def final(self, seconds: float, objective: float, bound: float) -> None:
        self.progress(seconds, objective, bound)


def solve(instance: AllocationInstance, params: SolverParams, progress: Progress | None = None) -> Proposal:
    """Allocate the month (SPEC §3); raise InfeasibleError when must_allocate provably cannot be met.

    A re-run (instance.previous set) starts from the previous allocation: under strict stability
    (params.stability None) the requests the change does not require to move are held where
    they were; when that leaves a must_allocate request without room, the month is solved again
    with a stability weight above any request's value (moves only where they pay for a request).
    """
    started = time.perf_counter()
    c = compile_instance(instance, params)
    throttled = _Throttle(progress) if progress is not None else None
    try:
        return _solve(instance, c, params, throttled, started)
    except (InfeasibleError, NoSolutionError):
        if not c.strict or not (c.kept_pair != NO_PAIR).any():
            raise
    weight = float(np.abs(c.pair_value).max(initial=0) + 1)
    soft = replace(params, stability=weight)
    proposal = _solve(instance, compile_instance(instance, soft), soft, throttled, started)
    note = (f"strict stability left must_allocate requests without room; solved with a stability weight of "
            f"{weight:g} per request: objective and bound count it for every request moved")
    proposal.bound_note = "; ".join(filter(None, [note, proposal.bound_note]))
    return proposal


@dataclass
class _Relaxation:
    """The month's relaxation, computed once when first needed: LP, else Lagrangian."""

    kind: str  # BOUND_LP or BOUND_LAGRANGIAN
    lp: LpRelaxation | None
    lagrangian: LagrangianBound | None
    note: str
    seconds: float

    @property
    def price(self) -> np.ndarray:
        """Capacity prices: the LP's duals or the Lagrangian multipliers."""
        if self.lp is not None:
            return self.lp.resource_dual
        assert self.lagrangian is not None  # one of the two is always set
        return self.lagrangian.price

    def part_bound(self, c: CompiledInstance, part: np.ndarray, pairs: np.ndarray, room: np.ndarray) -> float:
        """The bound of one component (`part`, its usable `pairs`)."""
        if self.lp is not None:
            return float(c.pair_value[pairs] @ self.lp.x[pairs])
        assert self.lagrangian is not None
        return self.lagrangian.value(room, part, np.unique(c.pair_resource[pairs]))


def _solve(
    instance: AllocationInstance, c: CompiledInstance, params: SolverParams, progress: _Throttle | None,
    started: float,
) -> Proposal:
    """solve() on a compiled month."""
    phases = {"compile": time.perf_counter() - started}
    _require_pairs_for_must_allocate(c)
    deterministic = params.deterministic_work is not None
    tolerance = max(float(params.gap_tolerance), 0.0)
    budget = Budget(
        deterministic=deterministic,
        started=started,
        wall_end=started + params.time_limit_s - EXPLAIN_SECONDS_PER_REQUEST * c.num_requests,
        safety_end=started + params.time_limit_s * WALL_SAFETY,
        work=float(params.deterministic_work) if params.deterministic_work is not None else math.inf,
    )

    t = time.perf_counter()
    fixed = c.fixed_pair
    pinned = fixed.copy()  # pins, and under strict stability the requests kept where they were
    assign = _warm_start(c, pinned)
    room = c.capacity - c.load(pinned)
    # Pairs that can ever be chosen: those of requests not held, that fit beside the held ones.
    usable = (fixed[c.pair_request] == NO_PAIR) & (c.pair_units <= room[c.pair_resource])
    free = np.flatnonzero((fixed == NO_PAIR) & (np.diff(c.pair_request_start) > 0))
    pinned_value = float(c.objective(pinned))
    trivial = _trivial_bound(c, usable)
    parts = components(c, free, usable)
    phases["greedy"] = time.perf_counter() - t
    part_pairs = [len(_usable_pairs(c, part, usable)) for part in parts]
    part_bound = [float(trivial[part].sum()) for part in parts]
    bound_kind = [BOUND_TRIVIAL] * len(parts)
    done = [False] * len(parts)  # proven within the tolerance (or optimal): no more search
    model_size = {"variables": 0, "constraints": 0, "pairs": c.num_pairs, "components": len(parts)}
    relaxation: _Relaxation | None = None
    build_seconds = 0.0
    # The tolerance as objective units for the whole month, shared out among the components as
    # they come (in proportion to what they can add); what a component proven closer than its
    # share leaves goes to the ones after it. Measured on the demo month (15 components): a
    # relative tolerance per component took 3.2-6.7 s, most of it closing gaps of 10 units on
    # the last components, which the month's tolerance (127 units) allows at once.
    slack = tolerance * _magnitude_floor(float(c.objective(assign)), pinned_value + float(trivial[free].sum()))
    weight = [max(b, 0.0) + 1.0 for b in part_bound]

    def gap_of(k: int) -> float:
        return max(part_bound[k] - float(c.pair_value[_chosen(assign[parts[k]])].sum()), 0.0)

    # Phase 1: CP-SAT takes a first look at every component small enough for one model, with
    # its share of the slack as gap limit. must_allocate makes a component tight: CP-SAT's
    # portfolio is best at finding and improving feasible allocations there. Without it,
    # CP-SAT only gets a first look (it proves small components optimal) and the LNS of phase
    # 2 does the improving.
    # The month's relaxation first (LP, else Lagrangian): it bounds every component, so a
    # search stops as soon as it is within the slack of that bound, not only of CP-SAT's own.
    if parts:
        relaxation = _relax(c, assign, fixed, room, usable, budget)
        phases["bound"] = relaxation.seconds
        for k, part in enumerate(parts):
            # Pair values are integers, so is every component's value: its bound rounds down (after
            # HiGHS's tolerances, ~1e-7 relative, are allowed for).
            relaxed = relaxation.part_bound(c, part, _usable_pairs(c, part, usable), room)
            relaxed = math.floor(relaxed + 1e-6 + 1e-7 * abs(relaxed))
            if relaxed < part_bound[k]:
                part_bound[k], bound_kind[k] = relaxed, relaxation.kind
    left = slack
    for k, part in enumerate(parts):
        share = budget.left() * part_pairs[k] / max(sum(part_pairs[k:]), 1)
        # Up to twice its share of the slack left: most components close exactly, and the month
        # check below only needs the sum of the gaps within the slack.
        part_slack = max(left, 0.0) * min(1.0, PHASE1_SLACK_FACTOR * weight[k] / sum(weight[k:]))
        must = part[c.must_allocate[part]]
        if len(part) and relaxation is not None:
            # The relaxation's rounding hints CP-SAT when it is worth more than the greedy; a
            # component already within its slack needs no search (measured on the demo month: 9
            # of 15 components, 4.8 s -> 2.6 s under load).
            rounded = _rounding(c, assign, part, _usable_pairs(c, part, usable), relaxation)
            if (c.objective(rounded) > c.objective(assign)
                    and not (c.must_allocate[part] & (rounded[part] == NO_PAIR)).any()):
                assign = rounded
            if gap_of(k) <= part_slack and not (assign[must] == NO_PAIR).any():
                done[k] = True
                left -= gap_of(k)
                continue
        if part_pairs[k] <= (FULL_MODEL_MAX_PAIRS if len(must) else FIRST_LOOK_MAX_PAIRS):
            offset = float(c.objective(assign)) - float(c.pair_value[_chosen(assign[part])].sum())
            bound_offset = pinned_value + sum(part_bound) - part_bound[k]
            cp_share = share * (CPSAT_SHARE_WITH_MUST if len(must) else CPSAT_SHARE_WITHOUT_MUST)
            if tolerance > 0:
                # A quick look only: the month check after this phase may already be satisfied.
                cp_share = min(cp_share, FIRST_LOOK_SECONDS)
            result = _solve_or_explain(c, part, room, budget, cp_share, params, assign,
                                       progress, offset, bound_offset, gap_limit=part_slack,
                                       stop_at=part_bound[k] - part_slack)
            build_seconds += result.build_seconds
            assign[part] = result.chosen
            if result.bound < part_bound[k]:
                part_bound[k], bound_kind[k] = result.bound, BOUND_CPSAT
            # OPTIMAL: CP-SAT proved the component within its gap limit; reached_target: within
            # the slack of the relaxation's bound.
            done[k] = result.status == cp_model.OPTIMAL or result.reached_target
            model_size["variables"] += result.num_variables
            model_size["constraints"] += result.num_constraints
        elif (assign[must] == NO_PAIR).any():
            result = _solve_or_explain(c, must, room, budget, share * MUST_SHARE, params, assign)
            build_seconds += result.build_seconds
            assign[must] = result.chosen
            assign = greedy_fill(c, assign, requests=part)
        left -= gap_of(k)

    # Between phases: the month's objective against its bound. Phase 2 improves the components
    # not yet within their share of what is left of the slack: the relaxation's rounding, then
    # the LNS (or the tabu search on tight components), each until its target or its time. Time
    # a component leaves unused flows to the ones after it; what is left when all have had their
    # turn goes to another round over those still outside their slack (measured on the demo
    # month without tolerance: the solve ended after 8.6 s of 30 with a gap of 5 units on a
    # component whose share had run out while the last one closed early).
    for round_number in range(PHASE2_ROUNDS):
        rest = [k for k in range(len(parts)) if not done[k]]
        gaps = [gap_of(j) for j in range(len(parts))]  # kept up to date as components improve
        total_gap = sum(gaps)  # the month's bound minus its objective
        if tolerance > 0:
            # The largest gaps first: measured on a `make demo` month (2027-01, data seed 7, solver
            # seed 7), in component order one component spent its whole 7.8 s share closing its last
            # 20 units towards a slack share of 17 (its LP bound may be out of reach) before the one
            # 330 units from its bound had its turn: 9.9 s; largest gaps first: 2.2 s.
            rest.sort(key=lambda k: -gaps[k])
        left = slack - sum(gaps[k] for k in range(len(parts)) if done[k])
        month_within = _within(float(c.objective(assign)), pinned_value + float(sum(part_bound)), tolerance)
        if (not rest or relaxation is None or (tolerance > 0 and month_within)
                or budget.left() <= PHASE2_MIN_LEFT * (params.time_limit_s if not deterministic else 1.0)):
            break
        value_before = float(c.objective(assign))
        for position, k in enumerate(rest):
            assert relaxation is not None  # computed before phase 1 whenever there are components
            part = parts[k]
            part_started, work_before = time.perf_counter(), budget.left()
            share = budget.left() * part_pairs[k] / max(sum(part_pairs[j] for j in rest[position:]), 1)
            part_slack = max(left, 0.0) * weight[k] / sum(weight[j] for j in rest[position:])
            if tolerance > 0:
                # Or what the other components' gaps leave of the month's slack: reaching it puts the
                # month within its tolerance, so no component closes more than the month needs.
                part_slack = max(part_slack, slack - (total_gap - gaps[k]))
            must = part[c.must_allocate[part]]
            pairs = _usable_pairs(c, part, usable)
            if gaps[k] <= part_slack:
                done[k] = True
                left -= gaps[k]
                continue
            # The LNS (or the tabu search) starts from the rounding even when it is worth less than
            # the CP-SAT or greedy allocation: measured, the LNS ends much higher from there (0.16 % vs
            # 0.44 % below the LP on a 936 x 50 component in 3 s). The better of the two is kept.
            # Later rounds go on from where the search left the component.
            fallback = assign
            rounded = _rounding(c, assign, part, pairs, relaxation) if round_number == 0 else assign
            if not (c.must_allocate[part] & (rounded[part] == NO_PAIR)).any():
                assign = rounded
            if deterministic:
                work, deadline = share - (work_before - budget.left()), budget.safety_end
            else:
                work, deadline = math.inf, part_started + share
            # The search of this component stops once it is within its share of the slack.
            target = part_bound[k] - part_slack
            outside = float(c.objective(assign)) - float(c.pair_value[_chosen(assign[part])].sum())
            if _tight(part, must):
                bound_now = pinned_value + sum(part_bound)
                report = None
                if progress:
                    def report(value: int, outside: float = outside, bound_now: float = bound_now) -> None:
                        progress(time.perf_counter() - started, outside + value, bound_now)
                # One search per worker from the LP rounding (or the CP-SAT allocation when the rounding
                # leaves a must_allocate request out), each with its own penalty profile.
                assign, spent = tabu.improve_component(c, assign, part, pairs, room, max(work, 0.0),
                                                       deadline, params.seed, report, threads=params.workers,
                                                       target=target)
                budget.charge(spent)
            else:
                # Ejection chains first (cheap moves until none gains), then the LNS's exact re-solves.
                ejection_deadline = time.perf_counter() + EJECTION_SHARE * max(deadline - time.perf_counter(), 0.0)
                assign, _ = ejection.improve(c, assign, part, usable, ejection_deadline)
                assign, stats = improve(c, assign, max(work, 0.0), deadline, params.seed, progress, started,
                                        pinned_value + sum(part_bound), resources=np.unique(c.pair_resource[pairs]),
                                        sub_deterministic_time=LNS_SUB_TIME_WITH_MUST if len(must) else LNS_SUB_TIME,
                                        target=outside + target, threads=params.workers)
                budget.charge(stats.work)
                build_seconds += stats.build_seconds
            if c.objective(fallback) > c.objective(assign):
                assign = fallback
            gap = gap_of(k)
            done[k] = gap <= part_slack
            left -= gap
            total_gap += gap - gaps[k]
            gaps[k] = gap
        if float(c.objective(assign)) <= value_before and round_number > 0:
            break  # a whole round without a gain: the searches are stuck

    assign = greedy_fill(c, assign)  # anything that still fits and adds value
    objective = float(c.objective(assign))
    bound = pinned_value + float(sum(part_bound))
    if objective >= bound:
        bound, status, stop = objective, "OPTIMAL", STOP_OPTIMAL
    else:
        status = "FEASIBLE"
        if _within(objective, bound, tolerance) or (tolerance > 0 and all(done)):
            stop = STOP_TOLERANCE
        else:
            stop = STOP_WORK_BUDGET if deterministic else STOP_TIME_LIMIT
    if progress:
        progress.final(time.perf_counter() - started, objective, bound)
    phases["model_build"] = build_seconds
    searched = time.perf_counter() - started
    phases["search"] = max(searched - sum(phases.values()), 0.0)
    t = time.perf_counter()
    allocations = allocation_table(instance, c, assign)
    phases["explain"] = time.perf_counter() - t
    kinds = sorted(set(bound_kind), key=[BOUND_CPSAT, BOUND_LP, BOUND_LAGRANGIAN, BOUND_TRIVIAL].index)
    return Proposal(
        allocations=allocations,
        objective=objective,
        bound=float(bound),
        gap=relative_gap(objective, bound),
        status=status,
        solve_seconds=time.perf_counter() - started,
        model_size=model_size,
        parts=1,
        conflicts=list(c.conflicts),
        stop_reason=stop,
        bound_kind="+".join(kinds) if parts else BOUND_CPSAT,
        bound_note=relaxation.note if relaxation is not None else "",
        churn=churn(instance.previous, allocations,
                    dict(zip(c.request_ids.tolist(), c.request_units.tolist()))) if instance.previous else {},
        phase_seconds={key: round(value, 3) for key, value in phases.items()},
    )


def _magnitude_floor(objective: float, upper: float) -> float:
    """A number at most |bound| for any bound between `objective` (achieved) and `upper` (a bound)."""
    if objective > 0:
        return objective
    if upper < 0:
        return -upper
    return 1.0


def _within(value: float, bound: float, tolerance: float) -> bool:
    """Whether `value` is proven within `tolerance` (relative) of `bound`."""
    return value >= bound or relative_gap(value, bound) <= tolerance


def _warm_start(c: CompiledInstance, pinned: np.ndarray) -> np.ndarray:
    """The better of the greedy from the pins and the greedy from the previous version's kept pairs."""
    fresh = greedy_fill(c, pinned)
    if not (c.kept_pair != NO_PAIR).any():
        return fresh
    warm = greedy_fill(c, np.where(pinned != NO_PAIR, pinned, c.kept_pair))
    return warm if c.objective(warm) >= c.objective(fresh) else fresh


def _relax(
    c: CompiledInstance, assign: np.ndarray, fixed: np.ndarray, room: np.ndarray, usable: np.ndarray,
    budget: Budget,
) -> _Relaxation:
    """The month's LP relaxation when it solves in its share of the time, else the Lagrangian bound."""
    t = time.perf_counter()
    n_usable = int(usable.sum())
    if n_usable <= LP_MAX_PAIRS:
        try:
            limit = max(LP_SHARE * budget.left() if not budget.deterministic
                        else budget.safety_end - time.perf_counter(), 1.0)
            lp = lp_relaxation(c, limit, usable=usable)
            budget.charge(LP_WORK_PER_PAIR * c.num_pairs)
            return _Relaxation(BOUND_LP, lp, None, "", time.perf_counter() - t)
        except BoundError as error:
            note = f"LP relaxation not solved in {limit:.0f} s ({error}); Lagrangian bound instead"
    else:
        note = f"LP relaxation skipped ({n_usable:,} pairs > {LP_MAX_PAIRS:,}); Lagrangian bound instead"
    pairs = np.flatnonzero(usable)
    lower = float(c.pair_value[_chosen(np.where(fixed == NO_PAIR, assign, NO_PAIR))].sum())
    left = budget.left() if not budget.deterministic else budget.safety_end - time.perf_counter()
    lagrangian = lagrangian_bound(c, pairs, room, lower, time.perf_counter() + max(LAGRANGIAN_SHARE * left, 1.0))
    budget.charge(LP_WORK_PER_PAIR * c.num_pairs)
    return _Relaxation(BOUND_LAGRANGIAN, None, lagrangian,
                       f"{note} ({lagrangian.iterations} subgradient iterations)", time.perf_counter() - t)


def _usable_pairs(c: CompiledInstance, part: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """The usable pairs of the requests in `part` (sorted)."""
    pairs = sub_pairs(c, part, None)
    return pairs[usable[pairs]]


def _tight(part: np.ndarray, must: np.ndarray) -> bool:
    """Whether a component gets the tabu search rather than the LNS (see TABU_MAX_REQUESTS)."""
    return 0 < len(part) <= TABU_MAX_REQUESTS and len(must) >= TABU_MIN_MUST_SHARE * len(part)


def components(c: CompiledInstance, requests: np.ndarray, usable: np.ndarray | None = None) -> list[np.ndarray]:
    """`requests` grouped into independent components (no shared usable pair), smallest first.

    Only `usable` pairs (default: all) link requests and resources; an optional request without
    a usable pair can never be allocated and is left out, a must_allocate one stays (alone) so
    that CP-SAT proves the month infeasible. Small components usually finish at a proven
    optimum well inside their share of the time, and what they leave flows to the larger ones
    solved after them.
    """
    if len(requests) == 0:
        return []
    pairs = sub_pairs(c, requests, None)
    if usable is not None:
        pairs = pairs[usable[pairs]]
    labels = component_labels(c.num_requests, len(c.capacity), c.pair_request[pairs], c.pair_resource[pairs])
    request_label = labels.request[requests]
    alone = request_label < 0
    requests = requests[~alone | c.must_allocate[requests]]
    request_label = np.where(labels.request[requests] >= 0, labels.request[requests],
                             labels.count + np.arange(len(requests)))
    order = np.lexsort((requests, request_label))
    grouped = requests[order]
    cuts = np.flatnonzero(np.diff(request_label[order])) + 1
    parts = np.split(grouped, cuts) if len(grouped) else []
    sizes = [int(np.diff(c.pair_request_start)[part].sum()) for part in parts]
    ranked = sorted(range(len(parts)), key=lambda k: (sizes[k], int(parts[k][0])))
    return [parts[k] for k in ranked]


def _chosen(assigned: np.ndarray) -> np.ndarray:
    """The pairs of an assignment slice, without NO_PAIR."""
    return assigned[assigned != NO_PAIR]


def _trivial_bound(c: CompiledInstance, usable: np.ndarray) -> np.ndarray:
    """Per request, the most it can add: its best usable pair (must_allocate), or that or nothing."""
    value = np.where(usable, c.pair_value, np.iinfo(np.int64).min // 2)
    starts = c.pair_request_start[:-1]
    has = c.pair_request_start[1:] > starts
    best = np.zeros(c.num_requests)
    if has.any():
        best[has] = np.maximum.reduceat(value, starts[has])
    best = np.where(best < np.iinfo(np.int64).min // 4, 0.0, best)  # no usable pair: it adds nothing
    return np.where(c.must_allocate, best, np.maximum(best, 0.0))


def _rounding(
    c: CompiledInstance, assign: np.ndarray, part: np.ndarray, pairs: np.ndarray, relaxation: _Relaxation
) -> np.ndarray:
    """The LP's integral pairs of `part` (they fit together), the rest filled greedily at the relaxation's prices."""
    rounded = assign.copy()
    rounded[part] = NO_PAIR
    if relaxation.lp is not None:
        integral = pairs[relaxation.lp.x[pairs] > 1 - 1e-6]
        rounded[c.pair_request[integral]] = integral
    return greedy_fill(c, rounded, requests=part, resource_price=relaxation.price)


def _require_pairs_for_must_allocate(c: CompiledInstance) -> None:
    """Raise when a must_allocate request has no eligible resource at all."""
    stranded = c.must_allocate & ~c.excluded & ~c.pin_dropped & (np.diff(c.pair_request_start) == 0)
    if stranded.any():
        ids = sorted(c.request_ids[stranded].tolist())
        raise InfeasibleError(
            f"{len(ids)} must_allocate request(s) have no eligible resource: {', '.join(ids[:20])}",
            ids,
        )


def _solve_or_explain(
    c: CompiledInstance,
    requests: np.ndarray,
    room: np.ndarray,
    budget: Budget,
    share: float,
    params: SolverParams,
    hint: np.ndarray,
    progress: Progress | None = None,
    offset: float = 0.0,
    bound_offset: float = 0.0,
    gap_limit: float = 0.0,
    stop_at: float | None = None,
) -> SubSolve:
    """CP-SAT on `requests`; InfeasibleError only when CP-SAT proves must_allocate cannot be met."""
    result = solve_part(c, requests, room, budget.limits(share, params, gap_limit), hint=hint, progress=progress,
                        progress_offset=offset, progress_start=budget.started,
                        progress_bound_offset=bound_offset, stop_at=stop_at)
    budget.charge(result.deterministic_time)
    unserved = requests[c.must_allocate[requests] & (hint[requests] == NO_PAIR)]
    if result.status not in SOLVED and result.status != cp_model.INFEASIBLE and len(unserved):
        # No allocation serving every must_allocate request yet: search on for a first one (past
        # the time limit, up to FEASIBILITY_SAFETY times it) rather than fail a feasible month.
        extra = budget.started + params.time_limit_s * FEASIBILITY_SAFETY - time.perf_counter()
        if extra > 0:
            retry = SearchLimits(deterministic_time=max(share, 0.01) * 4, wall_seconds=extra, seed=params.seed,
                                 workers=params.workers, deterministic=budget.deterministic,
                                 first_solution=True)
            result = solve_part(c, requests, room, retry, hint=hint, progress=progress,
                                progress_offset=offset, progress_start=budget.started,
                                progress_bound_offset=bound_offset)
            budget.charge(result.deterministic_time)
    if result.status in SOLVED:
        return result
    if result.status == cp_model.INFEASIBLE:
        relaxed = solve_part(c, requests, room, budget.limits(max(share, 1.0), params), hint=hint,
                             maximise_served_must=True)
        served = np.zeros(c.num_requests, dtype=bool)
        served[requests[relaxed.chosen != NO_PAIR]] = True
        must = requests[c.must_allocate[requests] & ~served[requests]]
        ids = sorted(c.request_ids[must].tolist())
        raise InfeasibleError(
            "must_allocate requests cannot all be served within capacity; "
            f"at least these {len(ids)} cannot: {', '.join(ids[:20])}",
            ids,
        )
    if len(unserved):
        ids = sorted(c.request_ids[unserved].tolist())
        raise NoSolutionError(
            f"no allocation serving every must_allocate request found within "
            f"{params.time_limit_s * FEASIBILITY_SAFETY:g} s (not proven infeasible; raise time_limit_s); "
            f"unplaced by the greedy start: {', '.join(ids[:20])}",
            ids,
        )
    # No solution within the limits, but the greedy start serves every must_allocate request.
    return SubSolve(
        status=cp_model.FEASIBLE, requests=requests, chosen=hint[requests], objective=0.0,
        bound=result.bound,
        deterministic_time=result.deterministic_time, wall_seconds=result.wall_seconds,
        num_variables=result.num_variables, num_constraints=result.num_constraints,
    )
