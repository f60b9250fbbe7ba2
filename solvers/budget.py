"""The solve's time budget (deterministic work or the wall clock) and its throttled progress reports."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from solvers.cpsat import SearchLimits
from solvers.schema import SolverParams

Progress = Callable[[float, float, float], None]


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


class Throttle:
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
