"""The whole stack on PostgreSQL: daemon and webserver driven through GraphQL, the CLI beside them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.conftest import BIN, dagster_services
from tests.signing import install_keys

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:gql.client")]

LOCATION = "monthly_batch_admin"
REPOSITORY = "__repository__"
# Every run is a real run worker (and code server for CLI runs): bounded, with room for a busy machine.
RUN_TIMEOUT_S = 300
BACKFILL_TIMEOUT_S = 480
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""

BACKFILL_RUNS = """
query BackfillRuns($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on PythonError { message }
  }
}"""


def months_around_today() -> tuple[str, str, str]:
    """Last, this and next month: all three are partition keys (next month included)."""
    this = pd.Period(pd.Timestamp.today(), freq="M")
    return tuple((this + offset).strftime("%Y-%m") for offset in (-1, 0, 1))


M1, M2, M3 = months_around_today()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """One batch-admin command in its own process, as an admin types it; a non-zero exit fails the test."""
    done = subprocess.run([str(BIN / "batch-admin"), *args], env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise AssertionError(f"batch-admin {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def status(env: dict[str, str], month: str) -> dict:
    return json.loads(cli(env, "status", month, "--json").stdout)


def file_hashes(*folders: Path) -> dict[str, str]:
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


def wait_run(client, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = client.get_run_status(run_id).value
        if state in TERMINAL:
            return state
        time.sleep(0.25)
    raise TimeoutError(f"run {run_id} did not finish within {RUN_TIMEOUT_S}s")


def wait_backfill(client, backfill_id: str, months: list[str]) -> dict[str, dict]:
    """Poll the backfill's runs (by their dagster/backfill tag) until every month's run has finished."""
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    results: dict[str, dict] = {}
    while time.monotonic() < deadline:
        answer = client._execute(BACKFILL_RUNS, {"id": backfill_id})["runsOrError"]
        assert answer["__typename"] == "Runs", answer
        results = {}
        for run in answer["results"]:
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            results[tags["dagster/partition"]] = {**run, "tags": tags}
        if set(months) <= set(results) and all(results[m]["status"] in TERMINAL for m in months):
            return results
        time.sleep(0.25)
    raise TimeoutError(f"backfill {backfill_id} did not finish within {BACKFILL_TIMEOUT_S}s: {results}")


def step_failures(run_id: str) -> list[str]:
    """The descriptions of a run's step failures, read from the PostgreSQL event log."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        messages = []
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None or event.event_type_value != "STEP_FAILURE":
                continue
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                messages.append(data.user_failure_data.description)
            elif data.error is not None:
                messages.append(data.error.message)
        return messages


@pytest.fixture(scope="module")
def stack(e2e_database, isolated_env, tmp_path_factory):
    """Three demo months on a fresh PostgreSQL database, and the daemon and webserver on it."""
    from batch_cli.instance import prepare
    from resources.settings import Settings

    home = tmp_path_factory.mktemp("e2e_pg_home")
    isolated_env.setenv("BATCH_ADMIN_HOME", str(home))
    isolated_env.setenv("BATCH_ADMIN_POSTGRES_URL", e2e_database)
    isolated_env.setenv("DAGSTER_HOME", str(home / "dagster"))  # recorded, so it is restored afterwards
    for name, value in install_keys(tmp_path_factory.mktemp("people")).items():
        isolated_env.setenv(name, value)
    dagster_home = prepare(Settings.from_env()).dagster_home
    env = dict(os.environ)
    cli(env, "migrate")  # production: the control store is migrated explicitly, once
    for month in (M1, M2, M3):
        cli(env, "demo-data", month, "--requests", "300", "--resources", "30")
        cli(env, "params", month, "--actor", "alice", "--set", "time_limit_s=3")
    with dagster_services(dagster_home, env, home / "logs") as services:
        yield env, home, services


def test_a_finalized_month_survives_a_backfill_that_gives_the_other_months_new_versions(stack):
    from dagster_graphql import DagsterGraphQLClient

    env, home, services = stack
    client = DagsterGraphQLClient("127.0.0.1", port_number=services.port, timeout=30)

    # A UI run without a run ticket is refused before it writes anything, whatever actor it names.
    untickted = client.submit_job_execution(
        "execute_job", repository_location_name=LOCATION, repository_name=REPOSITORY, run_config={},
        tags={"batch_admin/actor": "alice", "batch_admin/month": M2, "dagster/partition": M2})
    assert wait_run(client, untickted) == "FAILURE"
    assert any("carries no run ticket" in message for message in step_failures(untickted))
    assert status(env, M2)["versions"] == [] and not (home / "exports" / "allocations" / f"month={M2}").exists()
    assert any(a["rule"] == "refused_action" for a in json.loads(cli(env, "alerts", M2, "--json").stdout))

    # A partition run of execute_job, as the UI's launchpad submits it with a ticket from `batch-admin ticket`.
    ticket = json.loads(cli(env, "ticket", M1, "--job", "execute_job", "--actor", "alice", "--json").stdout)
    run_id = client.submit_job_execution(
        "execute_job", repository_location_name=LOCATION, repository_name=REPOSITORY, run_config={},
        tags={ticket["tag"]: ticket["value"], "batch_admin/month": M1, "dagster/partition": M1})
    assert wait_run(client, run_id) == "SUCCESS", step_failures(run_id)
    assert [v["version"] for v in status(env, M1)["versions"]] == [1]
    assert status(env, M1)["versions"][0]["actor"] == "alice"
    # The ticket was for one run: a second run with it is refused.
    again = client.submit_job_execution(
        "execute_job", repository_location_name=LOCATION, repository_name=REPOSITORY, run_config={},
        tags={ticket["tag"]: ticket["value"], "batch_admin/note": "again", "dagster/partition": M1})
    assert wait_run(client, again) == "FAILURE"
    assert any("a ticket is valid for one run" in message for message in step_failures(again))

    # Finalization: alice files the request; the finalize job launched from the UI carries out nothing
    # without the ticket an approval issues; bob's approval (his own key) issues it and carries it out.
    request = json.loads(cli(env, "finalize", M1, "--version", "1", "--actor", "alice", "--note", "reviewed",
                             "--json").stdout)
    early = client.submit_job_execution(
        "finalize_job", repository_location_name=LOCATION, repository_name=REPOSITORY,
        run_config={"ops": {"final_allocation": {"config": {"request_id": request["id"]}}}},
        tags={"dagster/partition": M1})
    assert wait_run(client, early) == "FAILURE"
    assert any("carried out only with the ticket its approval issued" in message for message in step_failures(early))
    assert status(env, M1)["phase"] == "proposed"
    cli(env, "approve", request["id"], "--actor", "bob")
    exports = home / "exports"
    before = file_hashes(exports / "final" / f"month={M1}", exports / "allocations" / f"month={M1}")
    assert any("/final/" in path for path in before) and any("/allocations/" in path for path in before)

    months = [M1, M2, M3]
    launched = client._execute(LAUNCH_BACKFILL, {"params": {
        "selector": {"partitionSetName": "execute_job_partition_set",
                     "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
        "partitionNames": months,
        # Submit the three runs now rather than on the backfill daemon's next 30 s tick; they still queue.
        "forceSynchronousSubmission": True,
        "tags": [{"key": "batch_admin/ticket", "value": json.loads(cli(
                     env, "ticket", *months, "--job", "execute_job", "--actor", "alice", "--json").stdout)["value"]},
                 {"key": "batch_admin/note", "value": "e2e backfill"}],
    }})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    results = wait_backfill(client, launched["backfillId"], months)

    assert all(results[m]["tags"]["batch_admin/month"] == m for m in months)  # the run queue limits on it
    assert results[M1]["status"] == "FAILURE"
    failures = step_failures(results[M1]["runId"])
    assert any(f"Month {M1} is finalized (version 1" in message for message in failures), failures
    assert file_hashes(exports / "final" / f"month={M1}", exports / "allocations" / f"month={M1}") == before
    m1 = status(env, M1)
    assert [v["version"] for v in m1["versions"]] == [1] and m1["final"]["version"] == 1

    for month in (M2, M3):
        assert results[month]["status"] == "SUCCESS", step_failures(results[month]["runId"])
        versions = status(env, month)["versions"]
        assert [v["version"] for v in versions] == [1]
        assert versions[0]["note"] == "e2e backfill"

    human = cli(env, "status", M1).stdout
    assert "final lock: version 1" in human and "approved by bob" in human
    assert "e2e backfill" in cli(env, "status", M2).stdout
    assert "intact" in cli(env, "audit", "--verify").stdout


REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""

RUN_ORIGIN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status repositoryOrigin { repositoryLocationName repositoryName } }
  }
}"""


def test_a_run_started_by_the_cli_shows_in_the_ui_and_its_used_ticket_cannot_run_again(stack):
    from dagster_graphql import DagsterGraphQLClient

    env, home, services = stack
    client = DagsterGraphQLClient("127.0.0.1", port_number=services.port, timeout=30)
    done = cli(env, "run", M3, "--actor", "alice", "--note", "cli run", "--json")
    cli_run = json.loads(done.stdout)["run_id"]
    before = [v["version"] for v in status(env, M3)["versions"]]
    assert before[-1] == json.loads(done.stdout)["version"]
    # A daemon serves this instance: the CLI submits to its queue instead of launching directly.
    assert "no Dagster daemon" not in done.stderr

    origin = client._execute(RUN_ORIGIN, {"runId": cli_run})["runOrError"]
    assert origin["repositoryOrigin"] == {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

    # SPEC section 4: a ticket serves one run; only a failed or cancelled parent's ticket may be taken over.
    launched = client._execute(REEXECUTE, {"parentRunId": cli_run})["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    child = launched["run"]["runId"]
    assert wait_run(client, child) == "FAILURE"
    assert any(f"was used by run {cli_run}" in failure for failure in step_failures(child)), step_failures(child)
    assert [v["version"] for v in status(env, M3)["versions"]] == before


def _wait_worker(client, run_id: str, started: bool = False) -> dict | None:
    """The run's worker tag once the run is in a warm worker (and STARTED, if asked); None once it
    ended without one."""
    import dagster as dg

    from engine.run_launcher import WORKER_TAG

    deadline = time.monotonic() + RUN_TIMEOUT_S
    with dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(run_id)
            if run is not None and WORKER_TAG in run.tags and (
                    not started or run.status == dg.DagsterRunStatus.STARTED):
                return json.loads(run.tags[WORKER_TAG])
            if run is not None and run.is_finished:
                return None
            time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not start within {RUN_TIMEOUT_S}s")


def _engine_messages(run_id: str) -> list[str]:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return [r.dagster_event.message or "" for r in instance.all_logs(run_id)
                if r.dagster_event is not None and r.dagster_event.event_type_value == "ENGINE_EVENT"]


def test_the_daemon_starts_runs_in_warm_workers_that_can_be_terminated_and_whose_death_fails_the_run(stack):
    """Runs this module's daemon launches once its forkserver is warm start in a forked worker (tagged
    with its pid); terminating such a run cancels it; a worker killed outright fails its run."""
    import signal as signals

    from dagster_graphql import DagsterGraphQLClient

    env, _home, services = stack
    client = DagsterGraphQLClient("127.0.0.1", port_number=services.port, timeout=30)

    def plan(month: str) -> str:  # ticketless plan runs from the UI run as `scheduler` (they only plan)
        return client.submit_job_execution("plan_job", repository_location_name=LOCATION,
                                           repository_name=REPOSITORY, run_config={},
                                           tags={"dagster/partition": month, "batch_admin/month": month})

    import dagster as dg

    from engine.run_launcher import WORKER_TAG

    run_id = plan(M2)
    assert _wait_worker(client, run_id) is not None
    assert wait_run(client, run_id) == "SUCCESS", step_failures(run_id)
    assert any("forked from the daemon's warm server" in m for m in _engine_messages(run_id))

    # Every run the daemon launched so far (the queued ones: this plan run, and the earlier tests' UI
    # launches, backfill runs and CLI runs while it served the queue when they ran before this one), its
    # first after the start included, started in a warm worker.
    with dg.DagsterInstance.get() as instance:
        queued = [r for r in instance.get_runs()
                  if instance.all_logs(r.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)]
    assert run_id in [r.run_id for r in queued]
    assert [r.run_id for r in queued if WORKER_TAG not in r.tags] == []

    # Terminate (the UI's button) as soon as the run started: its worker is interrupted, the run cancelled.
    run_id = plan(M2)
    assert _wait_worker(client, run_id, started=True) is not None
    client.terminate_run(run_id)
    assert wait_run(client, run_id) == "CANCELED"

    # kill -9 of the worker: the daemon sees its worker exit and fails the run at once.
    run_id = plan(M2)
    worker = _wait_worker(client, run_id)
    assert worker is not None
    os.kill(worker["pid"], signals.SIGKILL)
    started = time.monotonic()
    assert wait_run(client, run_id) == "FAILURE"
    assert time.monotonic() - started < 30
    assert any("terminated by signal 9" in m or "exit code" in m for m in _engine_messages(run_id)), \
        _engine_messages(run_id)

    # A change of the product's source after the server imported it: runs start through the code
    # server (which reloads) and say why.
    from engine.run_launcher import PRODUCT_ROOT

    source = PRODUCT_ROOT / "solvers" / "__init__.py"
    os.utime(source, (time.time(), time.time() + 5))
    run_id = plan(M3)  # M1 is finalized by the backfill test; M2's lease is the killed run's for a minute
    assert _wait_worker(client, run_id) is None
    assert wait_run(client, run_id) == "SUCCESS", step_failures(run_id)
    assert any("code changed after the daemon's warm server" in m for m in _engine_messages(run_id))
