"""What an anonymous user of the Dagster UI (GraphQL `launchRun`, no key) cannot do, through a real
webserver and daemon on the embedded default (issue 25: breaks 1, 2, 3 and the bad partition keys), and
the one re-execution a failed run's ticket allows."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pandas as pd
import pytest

from batch.identity import DEFAULT_TICKET_MINUTES, DEMO_KEYS_DIR, TICKET_TAG, load_private_key, make_ticket
from batch.lifecycle import EXECUTE_JOB
from batch.months import previous_month
from batch.roles import ACTOR_TAG, MONTH_TAG
from tests.e2e.conftest import BIN, dagster_services, small_demo_home

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LOCATION = "monthly_batch_admin"
REPOSITORY = "__repository__"
RUN_TIMEOUT_S = 300
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
MONTH = pd.Period(pd.Timestamp.today(), freq="M").strftime("%Y-%m")
PARTITION_TAG = "dagster/partition"

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on Error { message }
    ... on InvalidStepError { invalidStepKey }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

RUN = """
query Run($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { status tags { key value } }
  }
}"""

STEP_FAILURES = """
query Logs($id: ID!) {
  logsForRun(runId: $id) {
    ... on EventConnection { events { __typename ... on ExecutionStepFailureEvent { error { message }
      failureMetadata { label } } ... on MessageEvent { message } } }
  }
}"""


RUNS_TAGGED = """
query Runs($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) { ... on Runs { results { runId } } }
}"""

BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""


def graphql(url: str, query: str, variables: dict) -> tuple[int, dict]:
    """POST a GraphQL query; the HTTP status and the JSON answer (an HTTP error's body too)."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"body": exc.read().decode(errors="replace")}


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "batch-admin"), *args], env={**os.environ, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def launch(url: str, job: str, tags: dict[str, str], run_config: dict | None = None,
           parent: str | None = None) -> tuple[int, dict]:
    metadata: dict = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
    if parent:
        metadata |= {"parentRunId": parent, "rootRunId": parent}
    return graphql(url, LAUNCH_RUN, {"params": {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
        "runConfigData": run_config or {}, "executionMetadata": metadata}})


def launched(url: str, *args, **kwargs) -> str:
    status, answer = launch(url, *args, **kwargs)
    assert status == 200, answer
    result = answer["data"]["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def finish(url: str, run_id: str) -> tuple[str, dict[str, str]]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = graphql(url, RUN, {"id": run_id})[1]["data"]["runOrError"]
        if run["status"] in TERMINAL:
            return run["status"], {t["key"]: t["value"] for t in run["tags"]}
        time.sleep(0.25)
    raise TimeoutError(f"run {run_id} did not finish within {RUN_TIMEOUT_S}s")


def said(url: str, run_id: str) -> str:
    """Everything the run's event log says (step failures and messages), as one text."""
    events = graphql(url, STEP_FAILURES, {"id": run_id})[1]["data"]["logsForRun"]["events"]
    return "\n".join(json.dumps(e) for e in events)


def status(month: str = MONTH) -> dict:
    return json.loads(cli("status", month, "--json").stdout)


def runs_tagged(url: str, key: str, value: str) -> list[str]:
    runs = graphql(url, RUNS_TAGGED, {"key": key, "value": value})[1]["data"]["runsOrError"]["results"]
    return [r["runId"] for r in runs]


@pytest.fixture(scope="module")
def ui(isolated_env, tmp_path_factory):
    """A month with version 1, and the daemon and webserver of its embedded default instance."""
    dagster_home = small_demo_home(isolated_env, tmp_path_factory, "e2e_anon_home", MONTH, cli)
    home = dagster_home.parent
    with dagster_services(dagster_home, dict(os.environ), home / "logs") as services:
        first = json.loads(cli("run", MONTH, "--actor", "alice", "--json").stdout)["run_id"]
        yield services.url, home, first


def test_a_finished_runs_ticket_with_forged_lineage_writes_nothing(ui):
    url, _, first = ui
    _, tags = finish(url, first)
    forged = launched(url, "execute_job", {"batch_admin/ticket": tags["batch_admin/ticket"],
                                           "batch_admin/note": "mine now", "dagster/partition": MONTH}, parent=first)
    assert finish(url, forged)[0] == "FAILURE"
    assert f"was used by run {first}" in said(url, forged)
    assert [v["version"] for v in status()["versions"]] == [1]


def test_an_anonymous_launch_of_a_carried_out_request_changes_nothing(ui):
    url, home, _ = ui
    first = json.loads(cli("finalize", MONTH, "--version", "1", "--actor", "alice", "--note", "ok", "--json").stdout)
    cli("approve", first["id"], "--actor", "bob")
    unlock = json.loads(cli("unlock", MONTH, "--actor", "alice", "--reason", "fix", "--json").stdout)
    unlock_run = json.loads(cli("approve", unlock["id"], "--actor", "bob", "--json").stdout)["run_id"]
    cli("run", MONTH, "--actor", "alice", "--note", "fixed")
    second = json.loads(cli("finalize", MONTH, "--version", "2", "--actor", "alice", "--note", "ok", "--json").stdout)
    cli("approve", second["id"], "--actor", "bob")
    final = home / "exports" / "final" / f"month={MONTH}"
    before = json.loads((final / "manifest.json").read_text())
    # The unlock again, with and without the ticket its approval issued (visible in its run's tags).
    _, tags = finish(url, unlock_run)
    config = {"ops": {"unlock_finalized_month": {"config": {"request_id": unlock["id"]}}}}
    for ticket in ({}, {"batch_admin/ticket": tags["batch_admin/ticket"]}):
        replay = launched(url, "unlock_job", ticket, config)
        assert finish(url, replay)[0] == "FAILURE"
    # The first finalization again: it would re-publish version 1.
    old = launched(url, "finalize_job", {"dagster/partition": MONTH},
                   {"ops": {"final_allocation": {"config": {"request_id": first["id"]}}}})
    assert finish(url, old)[0] == "FAILURE"
    assert json.loads((final / "manifest.json").read_text()) == before
    state = status()
    assert state["phase"] == "finalized" and state["final"]["version"] == 2
    assert state["official_copy_problem"] is None
    assert "intact" in cli("audit", "--verify").stdout
    assert not [a for a in json.loads(cli("alerts", MONTH, "--json").stdout)
                if a["rule"] == "month_unlocked" and a["created_at"] > before["finalized_at"]]


# The instance (engine/instance.py) checks a run's partition tags before it creates the run:
# Dagster itself parsed the key there, and the webserver answered its ValueError with HTTP 500.
@pytest.mark.parametrize("key", ["2026-13", "../x", "2099-01"])
def test_a_launch_with_a_bad_partition_key_gets_a_clear_error(ui, key):
    url, _, _ = ui
    code, answer = launch(url, "execute_job", {PARTITION_TAG: key})
    assert code == 200, answer
    result = answer["data"]["launchRun"]
    assert result["__typename"] != "LaunchRunSuccess", result
    assert f"Partition key {key!r}" in result["message"] and "a month YYYY-MM from" in result["message"], result
    assert runs_tagged(url, PARTITION_TAG, key) == []
    assert key not in json.dumps(json.loads(cli("status", "--json").stdout))


def test_a_backfill_of_bad_partition_keys_is_refused_naming_them(ui):
    url, _, _ = ui
    code, answer = graphql(url, BACKFILL, {"params": {"partitionNames": ["2026-13", "../x"], "selector": {
        "partitionSetName": f"{EXECUTE_JOB}_partition_set",
        "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}}}})
    assert code == 200, answer
    result = answer["data"]["launchPartitionBackfill"]
    assert result["__typename"] == "PartitionKeysNotFoundError" and "2026-13" in result["message"], result
    assert runs_tagged(url, PARTITION_TAG, "2026-13") == []


def test_a_launch_for_a_month_out_of_range_leaves_no_phantom_month(ui):
    url, _, _ = ui
    code, answer = launch(url, "plan_job", {"dagster/partition": "2099-01"})
    assert code == 200, answer
    result = answer["data"]["launchRun"]
    if result["__typename"] == "LaunchRunSuccess":
        assert finish(url, result["run"]["runId"])[0] == "FAILURE"
    overview = json.loads(cli("status", "--json").stdout)
    assert "2099-01" not in json.dumps(overview)


def test_a_failed_run_is_re_executed_once_from_the_ui_and_that_re_execution_writes(ui):
    """As the UI's re-execute: launchRun with the parent's tags (its ticket) and parentRunId = rootRunId."""
    url, home, _ = ui
    month = previous_month(MONTH)
    cli("params", month, "--actor", "alice", "--set", "time_limit_s=1")
    # Inputs that cannot be read: the first run fails at its first step. (A month without any inputs is
    # refused before a run exists: tests/e2e/test_month_without_inputs_ui.py.)
    landing = home / "landing" / month
    landing.mkdir(parents=True)
    for table in ("resources", "requests"):
        (landing / f"{table}.parquet").write_bytes(b"not parquet")
    key = load_private_key("alice", str(DEMO_KEYS_DIR / "alice.key"))
    tags = {PARTITION_TAG: month, MONTH_TAG: month, ACTOR_TAG: "alice",
            TICKET_TAG: make_ticket(key, "alice", EXECUTE_JOB, [month], DEFAULT_TICKET_MINUTES).encode()}
    failed = launched(url, EXECUTE_JOB, tags)
    assert finish(url, failed)[0] == "FAILURE"
    assert "Input table resources cannot be read from" in said(url, failed)
    assert status(month)["versions"] == []
    cli("demo-data", month, "--requests", "120", "--resources", "12")
    again = launched(url, EXECUTE_JOB, tags, parent=failed)
    assert finish(url, again)[0] == "SUCCESS", said(url, again)
    assert [v["version"] for v in status(month)["versions"]] == [1]
    # The same parent once more: its ticket went to the first re-execution.
    twice = launched(url, EXECUTE_JOB, tags, parent=failed)
    assert finish(url, twice)[0] == "FAILURE"
    assert f"was used by run {again}" in said(url, twice)
    assert [v["version"] for v in status(month)["versions"]] == [1]
