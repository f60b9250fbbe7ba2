"""A CLI run handed to a running `batch-admin ui`: created and queued by its Dagster webserver (GraphQL
`launchRun`, its warm code location; its daemon starts the run in a warm run worker) and followed through
the same webserver, so this process imports no Dagster and starts no code server.

`batch-admin ui` writes ui.json in DAGSTER_HOME while it runs (batch_view/server.py): its webserver's URL
and its pid. When that process is gone, the webserver does not answer within PROBE_TIMEOUT_S or no daemon
serves its queue, the command takes its own path (batch_cli/runs.py), said only with --debug.
Also here, so that the dagster-free path shares them: what a run reports and how it ended.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.names import CODE_LOCATION as LOCATION_NAME
from batch.names import MONTH_TAG, PARTITION_TAG
from batch.names import REPOSITORY as REPOSITORY_NAME
from batch_cli.context import store
from batch_cli.failures import _debug as debugging
from resources.settings import DAEMON_SILENCE_S, UI_FILE

# "part 2/3 solve    4.0s of 6.5s objective ..." (assets/parts.py): one progress bar per part.
PART_PROGRESS = re.compile(r"^part (\d+)/(\d+) solve\s+([\d.]+)s of ([\d.]+)s")
# How often a followed run is looked at: its end is seen at most this late.
POLL_SECONDS = 0.2
# A run that logs nothing for this long is gone or hung: a solve logs its progress every few seconds,
# and a run worker that died says nothing more.
STALL_SECONDS = 600.0
# A webserver that does not answer this fast is not there (the CLI then starts its own code server).
PROBE_TIMEOUT_S = 1.0
# launchRun creates the run (an execution plan from the warm code location) and queues it.
LAUNCH_TIMEOUT_S = 120.0
# One look at a followed run: a page of its events.
READ_TIMEOUT_S = 60.0
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on Error { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
QUEUE_SERVED = """
{ instance { daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { lastHeartbeatTime } } } }"""
RUN_EVENTS = """
query Events($runId: ID!, $cursor: String) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection { cursor hasMore events { __typename ... on MessageEvent { message stepKey } } }
  }
}"""
STEP_STATUS = {"ExecutionStepStartEvent": "started", "ExecutionStepSuccessEvent": "done",
               "ExecutionStepFailureEvent": "failed", "ExecutionStepSkippedEvent": "skipped"}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class RunError(Exception):
    """A run that could not start or did not succeed; str() is one clear sentence."""


@dataclass
class RunOutcome:
    """What a job run did."""

    run_id: str
    success: bool
    error: str | None = None
    # Said once the run is over (the first line of a refusal stays the refusal itself).
    notes: list[str] = field(default_factory=list)


@dataclass
class RunEvents:
    """What a follower reports while a run executes: step starts, log lines, part progress."""

    on_step: Callable[[str, str], None] = lambda step, status: None
    on_log: Callable[[str, str], None] = lambda step, text: None
    on_part: Callable[[int, int, float, float], None] = lambda index, count, done, total: None
    on_notice: Callable[[str], None] = lambda text: None
    steps: dict[str, str] = field(default_factory=dict)

    def step(self, step: str, status: str) -> None:
        self.steps[step] = status
        self.on_step(step, status)

    def log(self, step: str, text: str) -> None:
        """A log line of the run: a solve part's progress, or a line to show."""
        match = PART_PROGRESS.match(text)
        if match:
            index, count, done, total = match.groups()
            self.on_part(int(index), int(count), float(done), float(total))
        elif text:
            self.on_log(step, text)


def stopped_following(run_id: str) -> RunError:
    return RunError(f"Stopped following run {run_id}; the run itself goes on: see it in the Dagster UI "
                    f"(or stop it there).")


def stalled(run_id: str, status: str, seconds: float = STALL_SECONDS) -> RunError:
    return RunError(f"Run {run_id} has not been updated for {seconds:.0f} s (status {status}): its run worker "
                    f"is gone or hung; this command stops following it (see it in the Dagster UI, and "
                    f"`batch-admin status`).")


def month_tags(month: str | None, tags: Mapping[str, str]) -> dict[str, str]:
    return {**({PARTITION_TAG: month, MONTH_TAG: month} if month else {}), **tags}


def _graphql(url: str, query: str, variables: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": dict(variables)}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def warm_webserver(dagster_home: Path, events: RunEvents) -> str | None:
    """The URL of the Dagster webserver of a running `batch-admin ui` on this instance, if it answers and its
    daemon serves the queue; else None (said only with --debug: the CLI then starts its own code server)."""
    path = dagster_home / UI_FILE
    if not path.exists():
        return None
    why = None
    try:
        found = json.loads(path.read_text())
        url, pid = str(found["url"]).rstrip("/"), int(found["pid"])
        os.kill(pid, 0)
        beat = _graphql(url, QUEUE_SERVED, {}, PROBE_TIMEOUT_S)["data"]["instance"]["daemonHealth"]["daemonStatus"]
        last = beat.get("lastHeartbeatTime")
        if last is not None and time.time() - float(last) <= DAEMON_SILENCE_S:
            return url
        why = "no daemon serves its queue"
    except ProcessLookupError:
        why = f"its process {found.get('pid')} is gone"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        why = f"{type(exc).__name__}: {exc}"
    if debugging():
        events.on_notice(f"{path} names no webserver that answers ({why}): this command starts its own code server.")
    return None


def launch_through(url: str, job_name: str, tags: Mapping[str, str], run_config: Mapping[str, Any]) -> str:
    """Create and queue a run with the webserver's GraphQL launchRun; its run id. Any error answer
    is one RunError sentence (a refusal of the instance, engine/instance.py, as it said it)."""
    params = {"selector": {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME,
                           "jobName": job_name},
              "runConfigData": dict(run_config),
              "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    where = f"{job_name} was not launched by the Dagster webserver at {url}"
    try:
        answer = _graphql(url, LAUNCH_RUN, {"params": params}, LAUNCH_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise RunError(f"{where}: HTTP {exc.code} {exc.read().decode(errors='replace').strip()[:300]}") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{where}: {exc}") from None
    result = (answer.get("data") or {}).get("launchRun") or {}
    kind = result.get("__typename")
    if kind == "LaunchRunSuccess":
        return str(result["run"]["runId"])
    if kind == "PythonError" and not result.get("stack"):
        # The instance's refusal (graphql_refusal: a PythonError without a stack) is the sentence itself.
        raise RunError(str(result.get("message", "")).strip())
    said = [e.get("message", "") for e in answer.get("errors") or []]
    said += [e.get("message", "") for e in result.get("errors") or []]
    said += [str(result[k]) for k in ("message", "invalidStepKey", "invalidOutputName") if result.get(k)]
    message = "; ".join(m.strip() for m in said if m and m.strip()) or kind or "no answer"
    raise RunError(f"{where}: {message.splitlines()[0]}")


def follow_through(url: str, run_id: str, events: RunEvents) -> str:
    """Read the run's new events through the webserver until it finishes; report steps, logs and part
    progress. The run's final status (SUCCESS, FAILURE or CANCELED)."""
    cursor: str | None = None
    last_sign = time.monotonic()
    queued_said = False
    while True:
        try:
            data = _graphql(url, RUN_EVENTS, {"runId": run_id, "cursor": cursor}, READ_TIMEOUT_S).get("data") or {}
        except (OSError, ValueError) as exc:
            raise RunError(f"Lost the Dagster webserver at {url} while following run {run_id} ({exc}); the run goes "
                           f"on: see it in the Dagster UI, and `batch-admin status`.") from None
        run, logs = data.get("runOrError") or {}, data.get("logsForRun") or {}
        if run.get("__typename") != "Run":
            raise RunError(f"Run {run_id} was deleted while this command followed it; what it did before is in "
                           f"`batch-admin status` and the audit log.")
        status = str(run["status"])
        for event in logs.get("events") or []:
            kind, step = event.get("__typename", ""), event.get("stepKey") or ""
            if kind in STEP_STATUS:
                if step:
                    events.step(step, STEP_STATUS[kind])
            elif kind == "LogMessageEvent":
                events.log(step, event.get("message") or "")
        if logs.get("events") or logs.get("cursor") != cursor or status == "QUEUED":
            last_sign = time.monotonic()
        cursor = logs.get("cursor", cursor)
        if status == "QUEUED" and not queued_said:
            events.on_notice(f"run {run_id} is queued (one run per month; the queue starts it when it may).")
            queued_said = True
        if logs.get("hasMore"):
            continue
        if status in FINISHED:
            return status
        if time.monotonic() - last_sign > STALL_SECONDS:
            raise stalled(run_id, status)
        time.sleep(POLL_SECONDS)


def run_through_ui(job_name: str, month: str | None, tags: Mapping[str, str], run_config: Mapping[str, Any] | None,
                   events: RunEvents, dagster_home: Path) -> RunOutcome | None:
    """The run, submitted to a running `batch-admin ui` and followed to its end; None when no ui serves."""
    url = warm_webserver(dagster_home, events)
    if url is None:
        return None
    run_id = launch_through(url, job_name, month_tags(month, tags), run_config or {})
    if month:
        _fail_dead_holder(month, f"run {run_id}", events)
    try:
        status = follow_through(url, run_id, events)
    except KeyboardInterrupt:
        raise stopped_following(run_id) from None
    if status == "SUCCESS":
        return RunOutcome(run_id, True)
    # Deferred: only a failed run pays Dagster's import, to read why from its event log as the own path does.
    from batch_cli.runs import failure_message

    return RunOutcome(run_id, False, failure_message(run_id))


def _fail_dead_holder(month: str, by: str, events: RunEvents) -> None:
    """A month whose lease is dead: its run is marked failed, so that the queue starts the new run (the own
    path does the same, batch_cli/runs.py fail_dead_holder); a live or free month costs one read."""
    lease = store().lease(month)
    if lease is None or not lease.dead():
        return
    # Deferred: Dagster's import, paid only when a dead run is to be marked failed.
    from batch_cli.runs import fail_dead_holder, instance

    failed = fail_dead_holder(instance(), month, by)
    if failed:
        events.on_notice(failed)
