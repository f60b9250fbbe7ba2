"""Property: generated valid months pass the contract; one mutation fails with exactly its rule."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.demo_data import write_landing
from batch.inputs import InputError, load_landing
from checks.expectations import validate_inputs

MONTH = "2027-02"
DAYS = pd.date_range("2027-02-01", "2027-02-28", freq="D").astype("datetime64[ns]")
SERVICES = ["consulting", "repair", "training"]


@st.composite
def valid_tables(draw) -> dict[str, pd.DataFrame]:
    """A small month meeting every rule of the landing contract."""
    n_resources = draw(st.integers(1, 6))
    resource_ids = [f"R{i}" for i in range(n_resources)]
    resource_services = draw(st.lists(st.sampled_from(SERVICES), min_size=n_resources, max_size=n_resources))
    resources = pd.DataFrame({
        "resource_id": resource_ids,
        "name": [f"Team {i}" for i in range(n_resources)],
        "service": resource_services,
        "region": draw(st.lists(st.sampled_from(["north", "south"]), min_size=n_resources, max_size=n_resources)),
        "capacity_units": draw(st.lists(st.integers(0, 2**31 - 1), min_size=n_resources, max_size=n_resources)),
    })
    cells = draw(st.sets(st.tuples(st.sampled_from(resource_ids), st.integers(0, len(DAYS) - 1)), max_size=12))
    cells = sorted(cells)
    availability = pd.DataFrame({
        "resource_id": [r for r, _ in cells],
        "date": pd.Series([DAYS[d] for _, d in cells], dtype="datetime64[ns]"),
        "available_units": draw(st.lists(st.integers(0, 500), min_size=len(cells), max_size=len(cells))),
    })
    n_requests = draw(st.integers(2, 8))
    windows = draw(st.lists(
        st.tuples(st.integers(0, len(DAYS) - 1), st.integers(0, 10), st.sampled_from(["both", "none", "first", "last"])),
        min_size=n_requests, max_size=n_requests,
    ))
    earliest = [DAYS[s] if kind in ("both", "first") else pd.NaT for s, _, kind in windows]
    latest = [DAYS[min(len(DAYS) - 1, s + w)] if kind in ("both", "last") else pd.NaT for s, w, kind in windows]
    requests = pd.DataFrame({
        "request_id": [f"Q{i}" for i in range(n_requests)],
        "customer_id": draw(st.lists(st.sampled_from(["C1", "C2", "C3"]), min_size=n_requests, max_size=n_requests)),
        "service": draw(st.lists(st.sampled_from(sorted(set(resource_services))), min_size=n_requests, max_size=n_requests)),
        "region": draw(st.lists(st.sampled_from(["north", "south", "east"]), min_size=n_requests, max_size=n_requests)),
        "units": draw(st.lists(st.integers(1, 2**31 - 1), min_size=n_requests, max_size=n_requests)),
        "priority": draw(st.lists(st.integers(1, 5), min_size=n_requests, max_size=n_requests)),
        "must_allocate": draw(st.lists(st.booleans(), min_size=n_requests, max_size=n_requests)),
        "preferred_resource_id": pd.Series(
            draw(st.lists(st.sampled_from([None, *resource_ids]), min_size=n_requests, max_size=n_requests)),
            dtype="str",
        ),
        "earliest_date": pd.Series(earliest, dtype="datetime64[ns]"),
        "latest_date": pd.Series(latest, dtype="datetime64[ns]"),
    })
    return {"resources": resources, "availability": availability, "requests": requests}


def _set(table: str, column: str, value):
    def mutate(tables: dict[str, pd.DataFrame]) -> bool:
        frame = tables[table]
        if frame.empty:
            return False
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[-1], column] = value
        return True
    return mutate


def _duplicate_request_id(tables: dict[str, pd.DataFrame]) -> bool:
    tables["requests"].loc[1, "request_id"] = tables["requests"].loc[0, "request_id"]
    return True


def _earliest_next_month(tables: dict[str, pd.DataFrame]) -> bool:
    """The last request may start only next month; its latest date is cleared, so that no window
    rule (earliest <= latest) breaks beside the one this mutation is about."""
    requests = tables["requests"]
    if requests.empty:
        return False
    requests["earliest_date"] = requests["earliest_date"].astype(object)
    requests.loc[requests.index[-1], "earliest_date"] = pd.Timestamp("2027-03-01")
    requests.loc[requests.index[-1], "latest_date"] = pd.NaT
    return True


def _invert_window(tables: dict[str, pd.DataFrame]) -> bool:
    requests = tables["requests"]
    requests.loc[0, "earliest_date"] = DAYS[20]
    requests.loc[0, "latest_date"] = DAYS[3]
    return True


# name -> (mutation, table, column, rule)
MUTATIONS = {
    "units 0": (_set("requests", "units", 0), "requests", "units", "units > 0"),
    "units beyond the solver": (_set("requests", "units", 2**31), "requests", "units", "units <= 2147483647 (solver limit)"),
    "priority 6": (_set("requests", "priority", 6), "requests", "priority", "priority 1..5"),
    "priority 0": (_set("requests", "priority", 0), "requests", "priority", "priority 1..5"),
    "unknown service": (_set("requests", "service", "plumbing"), "requests", "service", "service exists in resources"),
    "unknown preferred": (_set("requests", "preferred_resource_id", "R99"), "requests", "preferred_resource_id",
                          "preferred_resource_id exists in resources"),
    "earliest next month": (_earliest_next_month, "requests", "earliest_date",
                            f"earliest_date inside month {MONTH}"),
    "duplicate request_id": (_duplicate_request_id, "requests", "request_id", "request_id unique"),
    "inverted window": (_invert_window, "requests", "earliest_date, latest_date", "earliest_date <= latest_date"),
    "negative capacity": (_set("resources", "capacity_units", -1), "resources", "capacity_units", "capacity_units >= 0"),
    "negative availability": (_set("availability", "available_units", -5), "availability", "available_units",
                              "available_units >= 0"),
    "availability of unknown resource": (_set("availability", "resource_id", "R99"), "availability", "resource_id",
                                         "resource_id exists in resources"),
    "availability next month": (_set("availability", "date", pd.Timestamp("2027-03-01")), "availability", "date",
                                f"date inside month {MONTH}"),
}


def _load_and_validate(tables: dict[str, pd.DataFrame]):
    with tempfile.TemporaryDirectory() as home:
        for frame in tables.values():
            for column in frame.columns:
                if frame[column].dtype == object and column.endswith("date"):
                    frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
        write_landing(Path(home), MONTH, tables)
        return validate_inputs(load_landing(Path(home), MONTH))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=valid_tables())
def test_generated_valid_months_pass_the_contract(tables) -> None:
    report = _load_and_validate(tables)
    assert report.success, report.summary()


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=valid_tables(), name=st.sampled_from(sorted(MUTATIONS)))
def test_one_mutation_fails_with_exactly_the_rule_it_breaks(tables, name: str) -> None:
    mutate, table, column, rule = MUTATIONS[name]
    if not mutate(tables):
        return
    report = _load_and_validate(tables)
    assert [(f.table, f.column, f.rule) for f in report.failures] == [(table, column, rule)], report.summary()
    try:
        report.raise_for_failures()
    except InputError as error:
        assert (error.table, error.column, error.rule) == (table, column, rule)
    else:
        raise AssertionError("raise_for_failures accepted a failing report")
