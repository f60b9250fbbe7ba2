"""A month without inputs launched from the Dagster UI (issue 28 item 7), through a real webserver: GraphQL
`launchRun` as the launchpad and the asset page's "Materialize" send it. The launch is refused before a run
exists, with the sentence `batch-admin run` says; no run, no planned check, so nothing of the month is red
(Dagster 1.13 shows every planned check of a failed run as "Execution failed")."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from batch.errors import ControlError
from batch.identity import DEFAULT_TICKET_MINUTES, DEMO_KEYS_DIR, TICKET_TAG, load_private_key, make_ticket
from batch.landing import require_inputs
from batch.lifecycle import EXECUTE_JOB, PLAN_JOB
from batch.months import previous_month
from batch.roles import ACTOR_TAG, MONTH_TAG
from batch_cli.instance import prepare
from resources.settings import Settings
from tests.e2e.conftest import dagster_services
from tests.e2e.test_anonymous_launches import (
    LAUNCH_RUN,
    LOCATION,
    MONTH,
    PARTITION_TAG,
    REPOSITORY,
    cli,
    graphql,
    runs_tagged,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EMPTY = previous_month(MONTH)
CHAIN = ["landed_inputs", "validated_inputs", "capacity_plan", "allocation_parts", "allocation_proposal",
         "allocation_export"]
CHECKS = {"validated_inputs": ["inputs_meet_expectations"],
          "allocation_proposal": ["no_resource_over_capacity", "no_ineligible_pair", "must_allocate_requests_served"],
          "allocation_export": ["unallocated_ratio_near_trailing_months", "utilization_near_trailing_months",
                                "success_rate_at_least_minimum", "no_resource_above_maximum_utilization"]}


@pytest.fixture(scope="module")
def ui(isolated_env, tmp_path_factory):
    """A home with one month of inputs (MONTH) and one without (EMPTY); the webserver of its instance."""
    home = tmp_path_factory.mktemp("e2e_empty_month")
    for name, value in (("BATCH_ADMIN_HOME", home), ("DAGSTER_HOME", home / "dagster")):
        isolated_env.setenv(name, str(value))
    dagster_home = prepare(Settings.from_env()).dagster_home
    cli("demo-data", MONTH, "--requests", "60", "--resources", "8")
    with dagster_services(dagster_home, dict(os.environ), home / "logs", daemon=False) as services:
        yield services.url, home, dagster_home


def cli_sentence(home) -> str:
    with pytest.raises(ControlError) as said:
        require_inputs(home, EMPTY)
    return str(said.value)


def tags_of(month: str) -> dict[str, str]:
    key = load_private_key("alice", str(DEMO_KEYS_DIR / "alice.key"))
    return {PARTITION_TAG: month, MONTH_TAG: month, ACTOR_TAG: "alice",
            TICKET_TAG: make_ticket(key, "alice", EXECUTE_JOB, [month], DEFAULT_TICKET_MINUTES).encode()}


def launch(url: str, job: str, month: str, assets: list[str] | None = None) -> dict:
    """launchRun as the UI sends it: a job from the launchpad, or `__ASSET_JOB` with an asset selection
    (and its checks) from an asset's "Materialize" of one partition."""
    selector: dict = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job}
    if assets is not None:
        selector["assetSelection"] = [{"path": [name]} for name in assets]
        selector["assetCheckSelection"] = [{"assetKey": {"path": [name]}, "name": check}
                                           for name in assets for check in CHECKS.get(name, [])]
    code, answer = graphql(url, LAUNCH_RUN, {"params": {
        "selector": selector, "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags_of(month).items()]}}})
    assert code == 200, answer
    return answer["data"]["launchRun"]


@pytest.mark.parametrize(("job", "assets"), [(EXECUTE_JOB, None), (PLAN_JOB, None), ("__ASSET_JOB", CHAIN)])
def test_a_launch_for_a_month_without_inputs_is_refused_with_the_cli_sentence_and_nothing_turns_red(ui, job, assets):
    url, home, dagster_home = ui
    result = launch(url, job, EMPTY, assets)

    assert result["__typename"] == "PythonError", result
    assert result["message"] == cli_sentence(home)
    assert f"looked in {home / 'landing' / EMPTY}" in result["message"] and "batch-admin demo-data" in result["message"]
    assert runs_tagged(url, PARTITION_TAG, EMPTY) == []
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for asset, names in CHECKS.items():
            for name in names:
                history = instance.event_log_storage.get_asset_check_execution_history(
                    dg.AssetCheckKey(dg.AssetKey(asset), name), limit=100)
                assert [r for r in history if r.partition == EMPTY] == [], (asset, name)


def test_the_same_launch_for_a_month_with_inputs_creates_its_run(ui):
    url, _, _ = ui
    result = launch(url, "__ASSET_JOB", MONTH, CHAIN)
    assert result["__typename"] == "LaunchRunSuccess", result
    assert runs_tagged(url, PARTITION_TAG, MONTH) == [result["run"]["runId"]]
