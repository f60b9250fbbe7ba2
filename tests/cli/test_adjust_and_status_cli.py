"""`adjust --unpin/--include/--clear` and what `status` shows of parameters, pins and exclusions."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from assets.partitions import monthly_partitions
from batch.inputs import load_landing
from batch_cli.main import main

MONTH = monthly_partitions.get_partition_keys()[-1]  # next month


def cli(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == (0 if ok else 1), result.output + result.stderr
    return result


@pytest.fixture
def landed(home):
    cli("demo-data", MONTH, "--requests", "60", "--resources", "9", "--seed", "5")
    return load_landing(home, MONTH)


def test_status_shows_parameters_pins_and_exclusions_with_who_set_them_and_when(landed):
    first, second = landed.requests.iloc[0], landed.requests.iloc[1]
    target = landed.resources[(landed.resources["service"] == first.service)
                              & (landed.resources["region"] == first.region)].iloc[0]
    cli("params", MONTH, "--actor", "carol", "--set", "seed=7")
    cli("adjust", MONTH, "--actor", "alice", "--pin", f"{first.request_id}={target.resource_id}", "--note", "contract")
    cli("adjust", MONTH, "--actor", "carol", "--exclude", second.request_id, "--note", "customer cancelled")

    status = json.loads(cli("status", MONTH, "--json").stdout)

    assert [(p["key"], p["value"], p["actor"]) for p in status["params_set"]] == [("seed", 7, "carol")]
    pin, = status["adjustments"]["pins"]
    exclusion, = status["adjustments"]["exclusions"]
    assert (pin["request_id"], pin["resource_id"], pin["actor"], pin["note"]) == (
        first.request_id, target.resource_id, "alice", "contract")
    assert (exclusion["request_id"], exclusion["actor"]) == (second.request_id, "carol")
    assert datetime.fromisoformat(pin["at"]).utcoffset() is not None  # ISO 8601 with its zone
    human = cli("status", MONTH).stdout
    assert "seed" in human and f"pinned to {target.resource_id}" in human and "customer cancelled" in human
    assert "carol" in human and "alice" in human


def test_unpin_include_and_clear_take_adjustments_back_and_status_shows_none_left(landed):
    first, second, third = (landed.requests.iloc[i] for i in range(3))
    target = landed.resources[(landed.resources["service"] == first.service)
                              & (landed.resources["region"] == first.region)].iloc[0]
    cli("adjust", MONTH, "--actor", "alice", "--pin", f"{first.request_id}={target.resource_id}", "--note", "contract")
    cli("adjust", MONTH, "--actor", "alice", "--exclude", second.request_id, "--note", "cancelled")
    cli("adjust", MONTH, "--actor", "alice", "--exclude", third.request_id, "--note", "cancelled")

    said = cli("adjust", MONTH, "--actor", "alice", "--unpin", first.request_id, "--note", "contract ended").stdout
    cli("adjust", MONTH, "--actor", "alice", "--include", second.request_id, "--note", "came back")

    assert f"unpinned {first.request_id}" in said
    left = json.loads(cli("status", MONTH, "--json").stdout)["adjustments"]
    assert left["pins"] == [] and [e["request_id"] for e in left["exclusions"]] == [third.request_id]
    cli("adjust", MONTH, "--actor", "alice", "--clear", "--note", "start over")
    assert json.loads(cli("status", MONTH, "--json").stdout)["adjustments"] == {"pins": [], "exclusions": []}
    assert "pins and exclusions: none" in cli("status", MONTH).stdout
    audit = cli("audit", MONTH).stdout
    for words in (f"unpinned {first.request_id}; note: contract ended", f"included {second.request_id} again",
                  "cleared every pin and exclusion; note: start over"):
        assert words in audit


def test_an_undo_without_a_pin_or_exclusion_to_take_back_is_one_clear_refusal(landed):
    request = landed.requests.iloc[0].request_id

    refused = cli("adjust", MONTH, "--actor", "alice", "--unpin", request, "--note", "x", ok=False).stderr

    assert f"Request {request} is not pinned; there is no pin to take back." in refused
    assert "no exclusion to take back" in cli("adjust", MONTH, "--actor", "alice", "--include", request,
                                             "--note", "x", ok=False).stderr
    assert "no pins or exclusions to clear" in cli("adjust", MONTH, "--actor", "alice", "--clear", "--note", "x",
                                                   ok=False).stderr
    assert "exactly one of" in cli("adjust", MONTH, "--actor", "alice", "--clear", "--unpin", request,
                                   "--note", "x", ok=False).stderr


@pytest.fixture
def india_time(monkeypatch):
    """The terminal's zone is Asia/Kolkata (IST, +05:30, no daylight saving)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_are_iso_8601_with_zone_in_json_and_local_with_zone_in_the_terminal(landed, india_time):
    cli("lock", MONTH, "--actor", "alice", "--admins", "alice", "--ttl", "1")
    cli("params", MONTH, "--actor", "alice", "--set", "seed=7")

    status = json.loads(cli("status", MONTH, "--json").stdout)
    human = cli("status", MONTH).stdout

    expires = datetime.fromisoformat(status["lock"]["expires_at"])
    assert expires.utcoffset() is not None and "T" in status["lock"]["expires_at"]
    shown = expires.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S IST")
    assert f"until {shown}" in human
    set_at = datetime.fromisoformat(status["params_set"][0]["at"])
    assert set_at.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S IST") in human
