"""Batch parameters: the keys admins may set, their validation, and the solver's view of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from solvers.schema import DEFAULT_WEIGHTS, SolverParams


class ParamError(ValueError):
    """A parameter that is unknown or out of range; str() is one clear sentence."""


@dataclass(frozen=True)
class ParamSpec:
    """One settable parameter: its type and allowed range."""

    kind: type
    low: float
    high: float
    help: str


PARAMS: dict[str, ParamSpec] = {
    "time_limit_s": ParamSpec(float, 0.1, 3600, "solver time limit for the whole month, seconds"),
    "seed": ParamSpec(int, 0, 2**31 - 1, "solver random seed"),
    "workers": ParamSpec(int, 1, 64, "solver worker threads"),
    "default_cost": ParamSpec(int, 0, 1_000_000, "cost of a pair that is neither preferred nor continuing"),
    "gap_tolerance": ParamSpec(float, 0, 1, "the solve ends once its allocation is proven within this relative "
                               "gap of its bound (0: run to the time limit or a proven optimum)"),
    "stability": ParamSpec(float, 0, 1_000_000, "objective units a request earns by keeping its previous resource "
                           "in a re-run; unset (default): strict, only the moves a change requires"),
    "deterministic_work": ParamSpec(float, 0.01, 100_000, "CP-SAT deterministic work budget; when set, the same "
                                    "inputs and parameters give the same allocation (else the wall clock limits)"),
    "max_parts": ParamSpec(int, 1, 256, "most steps one month's solve fans out to (independent parts)"),
    **{f"weight.{p}": ParamSpec(int, 0, 1_000_000, f"objective weight of priority {p}") for p in range(1, 6)},
    # Alert thresholds of the month's versions (batch.alert_rules.AlertThresholds), not solver settings.
    "alert.min_success_rate": ParamSpec(float, 0, 1, "alert when fewer than this share of requests is allocated "
                                        "(default 0.5)"),
    "alert.max_resource_utilization": ParamSpec(float, 0, 10, "alert when a resource is planned above this share "
                                                "of its capacity (default 1.0)"),
}


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one `key=value` into a validated pair."""
    if "=" not in text:
        raise ParamError(f"Parameter {text!r} must look like key=value (e.g. time_limit_s=30).")
    key, raw = (part.strip() for part in text.split("=", 1))
    return key, validate(key, raw)


def check_key(key: str) -> str:
    """A known parameter's name (to unset it), else the one sentence naming the known ones."""
    if key not in PARAMS:
        raise ParamError(f"Unknown parameter {key!r}; known parameters: {', '.join(sorted(PARAMS))}.")
    return key


def validate(key: str, raw: Any) -> Any:
    """Check one parameter's name, type and range."""
    spec = PARAMS[check_key(key)]
    try:
        value = spec.kind(raw)
        if spec.kind is int and str(raw).strip() not in (str(value), f"+{value}"):
            raise ValueError
    except (TypeError, ValueError):
        raise ParamError(f"Parameter {key} must be {'an integer' if spec.kind is int else 'a number'}, not {raw!r}.") from None
    if not spec.low <= value <= spec.high:
        raise ParamError(f"Parameter {key} must be between {spec.low:g} and {spec.high:g}, not {value}.")
    return value


# Parameters of the pipeline rather than of the solver.
PIPELINE_PARAMS = {"max_parts": 8}
# A solve step costs one to two seconds (a forked process, its inputs and result through Parquet):
# below this many eligible pairs per part, fanning out costs more than a parallel solve saves.
MIN_PAIRS_PER_PART = 100_000


def max_parts(stored: dict[str, Any], pairs: int | None = None) -> int:
    """Most steps a month's solve fans out to: what admins set (max_parts); else up to 8, one per
    MIN_PAIRS_PER_PART eligible pairs, so that a small month is solved in one step."""
    if "max_parts" in stored:
        return int(stored["max_parts"])
    default = PIPELINE_PARAMS["max_parts"]
    return default if pairs is None else max(1, min(default, pairs // MIN_PAIRS_PER_PART))


def solver_params(stored: dict[str, Any]) -> SolverParams:
    """The solver parameters of a month: defaults overridden by what admins set."""
    weights = dict(DEFAULT_WEIGHTS)
    kwargs: dict[str, Any] = {}
    for key, value in stored.items():
        if key.startswith("weight."):
            weights[int(key.split(".", 1)[1])] = int(value)
        elif key in PARAMS and key not in PIPELINE_PARAMS and not key.startswith("alert."):
            kwargs[key] = PARAMS[key].kind(value)
    return SolverParams(weights=weights, **kwargs)


def params_snapshot(params: SolverParams) -> dict[str, Any]:
    """A JSON-able snapshot kept with every version."""
    return {
        "weights": {str(k): v for k, v in sorted(params.weights.items())},
        "time_limit_s": params.time_limit_s, "seed": params.seed, "workers": params.workers,
        "default_cost": params.default_cost, "deterministic_work": params.deterministic_work,
        "gap_tolerance": params.gap_tolerance, "stability": params.stability,
    }


@dataclass(frozen=True)
class ParamSetting:
    """A parameter set on the month: its value, who set it and when."""

    key: str
    value: Any
    actor: str | None
    at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "actor": self.actor,
                "at": self.at.isoformat(timespec="seconds") if self.at else None}


def param_settings(params: Mapping[str, Any], audit: Iterable[Mapping[str, Any]]) -> list[ParamSetting]:
    """The month's parameters with who set each last and when, from the audit's `params` entries."""
    last: dict[str, tuple[str | None, datetime | None]] = {}
    for entry in audit:
        if entry["action"] == "params":
            for key in (entry.get("details") or {}).get("changes") or {}:
                last[key] = (entry.get("actor"), entry.get("at"))
    return [ParamSetting(key, params[key], *last.get(key, (None, None))) for key in sorted(params)]
