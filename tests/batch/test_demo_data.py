"""Demo data: deterministic, realistic months that pass the landing contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch.demo_data import generate_actuals, generate_month, write_landing
from batch.inputs import COLUMNS, load_landing
from checks.expectations import validate_inputs

MONTH = "2026-12"


@pytest.fixture(scope="module")
def month_tables() -> dict[str, pd.DataFrame]:
    return generate_month(MONTH, requests=2000, resources=120, seed=7)


def monthly_capacity(tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Capacity per resource: its availability sum when it has rows, else capacity_units."""
    resources = tables["resources"].set_index("resource_id")
    summed = tables["availability"].groupby("resource_id")["available_units"].sum()
    return summed.reindex(resources.index).fillna(resources["capacity_units"]).astype("int64")


def test_the_same_seed_gives_the_same_frames_and_bytes(tmp_path: Path) -> None:
    first = generate_month(MONTH, requests=500, resources=40, seed=3)
    second = generate_month(MONTH, requests=500, resources=40, seed=3)
    for table in first:
        pd.testing.assert_frame_equal(first[table], second[table])
    a = write_landing(tmp_path / "a", MONTH, first)
    b = write_landing(tmp_path / "b", MONTH, second)
    for path in sorted(a.iterdir()):
        assert path.read_bytes() == (b / path.name).read_bytes()
    other = generate_month(MONTH, requests=500, resources=40, seed=4)
    assert not other["requests"].equals(first["requests"])


def test_the_month_has_the_asked_sizes_and_the_contract_columns(month_tables) -> None:
    assert set(month_tables) == {"resources", "availability", "requests"}
    assert len(month_tables["requests"]) == 2000 and len(month_tables["resources"]) == 120
    for table, frame in month_tables.items():
        assert list(frame.columns) == COLUMNS[table]
    requests = month_tables["requests"]
    assert requests["request_id"].is_unique and month_tables["resources"]["resource_id"].is_unique
    assert requests["units"].dtype == "int64" and requests["must_allocate"].dtype == bool
    assert requests["earliest_date"].dtype == "datetime64[ns]"
    availability = month_tables["availability"]
    assert availability["date"].between(pd.Timestamp("2026-12-01"), pd.Timestamp("2026-12-31")).all()
    assert len(availability) < 120 * 31, "some days are missing"
    assert (availability["available_units"] == 0).any(), "some days are absences"


def test_the_mix_is_realistic(month_tables) -> None:
    requests, resources = month_tables["requests"], month_tables["resources"]
    assert 4 <= resources["service"].nunique() <= 6
    shares = requests["priority"].value_counts(normalize=True)
    assert shares[1] < 0.1 and shares[[3, 4, 5]].sum() > 0.7
    assert 0.02 < requests["must_allocate"].mean() < 0.08
    assert 0.1 < requests["preferred_resource_id"].notna().mean() < 0.3
    windowed = requests["earliest_date"].notna() | requests["latest_date"].notna()
    assert 0.1 < windowed.mean() < 0.4
    both = requests.dropna(subset=["earliest_date", "latest_date"])
    assert (both["earliest_date"] <= both["latest_date"]).all()


def test_some_services_are_short_of_capacity_and_others_comfortable(month_tables) -> None:
    resources = month_tables["resources"].assign(capacity=monthly_capacity(month_tables).to_numpy())
    ratio = month_tables["requests"].groupby("service")["units"].sum() / resources.groupby("service")["capacity"].sum()
    assert (ratio > 1.2).any() and (ratio < 0.9).any()
    assert ratio.max() <= 2.1


def test_must_allocate_demand_fits_well_inside_its_group(month_tables) -> None:
    resources = month_tables["resources"].assign(capacity=monthly_capacity(month_tables).to_numpy())
    capacity = resources.groupby(["service", "region"])["capacity"].sum()
    must = month_tables["requests"].query("must_allocate").groupby(["service", "region"])["units"].sum()
    assert (must <= 0.5 * capacity.reindex(must.index)).all()
    assert month_tables["requests"].query("must_allocate")["earliest_date"].isna().all()


def test_every_preferred_resource_serves_the_request_group(month_tables) -> None:
    resources = month_tables["resources"].set_index("resource_id")
    preferred = month_tables["requests"].dropna(subset=["preferred_resource_id"])
    assert (resources.loc[preferred["preferred_resource_id"], "service"].to_numpy() == preferred["service"].to_numpy()).all()


def test_a_full_size_month_keeps_groups_small() -> None:
    tables = generate_month(MONTH, requests=100_000, resources=5_000, seed=1)
    sizes = tables["resources"].groupby(["service", "region"]).size()
    assert sizes.max() <= 60 and sizes.median() >= 10
    assert len(tables["requests"]) == 100_000


def test_the_written_month_loads_back_and_passes_validation(tmp_path: Path, month_tables) -> None:
    folder = write_landing(tmp_path, MONTH, month_tables)
    assert sorted(p.name for p in folder.iterdir()) == [
        "availability.parquet", "requests.parquet", "resources.parquet"
    ]
    tables = load_landing(tmp_path, MONTH)
    for table, frame in month_tables.items():
        pd.testing.assert_frame_equal(tables.present()[table], frame)
    report = validate_inputs(tables)
    assert report.success, report.summary()


def test_rewriting_a_month_replaces_its_files(tmp_path: Path) -> None:
    write_landing(tmp_path, MONTH, generate_month(MONTH, requests=50, resources=10, seed=1))
    folder = write_landing(tmp_path, MONTH, generate_month(MONTH, requests=60, resources=10, seed=2))
    assert len(pd.read_parquet(folder / "requests.parquet")) == 60
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_actuals_follow_the_allocation_and_pass_validation(tmp_path: Path, month_tables) -> None:
    requests = month_tables["requests"].head(100)
    resources = month_tables["resources"]["resource_id"].to_numpy()
    allocation = pd.DataFrame({
        "request_id": requests["request_id"],
        "resource_id": pd.Series(np.where(np.arange(100) % 5 == 0, None, resources[np.arange(100) % len(resources)]),
                                 dtype="str"),
        "units": requests["units"],
        "status": np.where(np.arange(100) % 5 == 0, "unallocated", "allocated"),
    })
    actuals = generate_actuals(MONTH, allocation, seed=1)
    assert list(actuals.columns) == ["resource_id", "request_id", "actual_units"]
    assert len(actuals) == 80 and (actuals["actual_units"] >= 0).all()
    pd.testing.assert_frame_equal(actuals, generate_actuals(MONTH, allocation, seed=1))
    planned = allocation.set_index("request_id").loc[actuals["request_id"], "units"].to_numpy()
    assert (actuals["actual_units"] != planned).any(), "some deliveries differ from the plan"
    write_landing(tmp_path, MONTH, {**month_tables, "actuals": actuals})
    report = validate_inputs(load_landing(tmp_path, MONTH))
    assert report.success, report.summary()
