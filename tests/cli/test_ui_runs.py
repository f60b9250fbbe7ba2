"""When a CLI command hands its run to a running `batch-admin ui`, and what it reads back from the ui's webserver.

The webserver here is a stand-in answering Dagster's GraphQL with fixed answers (Dagster's webserver is not the
product; tests/e2e/test_cli_warm_runs.py runs the real one)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from batch_cli.ui_runs import RunError, RunEvents, follow_through, launch_through, warm_webserver
from resources.settings import UI_FILE

Answer = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def webserver() -> Iterator[tuple[str, list[Answer]]]:
    """A GraphQL endpoint answering each request with the next of `answers` (the last one again when used up)."""
    answers: list[Answer] = []
    asked: list[int] = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = answers[min(asked[0], len(answers) - 1)](body)
            asked[0] += 1
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()


def daemon_beat(seconds_ago: float) -> Answer:
    return lambda body: {"data": {"instance": {"daemonHealth": {"daemonStatus": {
        "lastHeartbeatTime": time.time() - seconds_ago}}}}}


def ui_file(home: Path, url: str, pid: int) -> None:
    (home / UI_FILE).write_text(json.dumps({"url": url, "pid": pid, "started": time.time()}))


def test_without_a_ui_file_the_command_takes_its_own_path(tmp_path):
    assert warm_webserver(tmp_path, RunEvents()) is None


def test_a_ui_file_left_by_a_process_that_is_gone_is_not_followed(tmp_path, webserver):
    url, answers = webserver
    answers.append(daemon_beat(1))
    gone = subprocess.Popen(["true"])
    gone.wait()
    ui_file(tmp_path, url, gone.pid)
    assert warm_webserver(tmp_path, RunEvents()) is None


def test_the_ui_takes_the_run_only_while_its_daemon_beats(tmp_path, webserver):
    url, answers = webserver
    ui_file(tmp_path, url, os.getpid())
    answers.append(daemon_beat(5))
    assert warm_webserver(tmp_path, RunEvents()) == url
    answers[:] = [daemon_beat(90)]  # two missed beats: its queue would hold the run for nobody
    assert warm_webserver(tmp_path, RunEvents()) is None


def test_a_refusal_of_the_instance_is_said_as_it_said_it(webserver):
    url, answers = webserver
    answers.append(lambda body: {"data": {"launchRun": {
        "__typename": "PythonError", "message": "Month 2031-13 is not a monthly partition.", "stack": []}}})
    with pytest.raises(RunError, match=r"^Month 2031-13 is not a monthly partition\.$"):
        launch_through(url, "execute_job", {"dagster/partition": "2031-13"}, {})


def test_the_run_is_launched_with_the_commands_tags_and_its_id_returned(webserver):
    url, answers = webserver
    seen: list[dict[str, Any]] = []

    def launched(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body["variables"]["params"])
        return {"data": {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": "r1"}}}}

    answers.append(launched)
    assert launch_through(url, "plan_job", {"batch_admin/ticket": "T"}, {}) == "r1"
    assert seen[0]["selector"]["jobName"] == "plan_job"
    assert seen[0]["executionMetadata"]["tags"] == [{"key": "batch_admin/ticket", "value": "T"}]


def page(status: str, events: list[dict[str, Any]], cursor: str) -> Answer:
    return lambda body: {"data": {"runOrError": {"__typename": "Run", "status": status},
                                  "logsForRun": {"__typename": "EventConnection", "cursor": cursor,
                                                 "hasMore": False, "events": events}}}


def test_the_follower_reports_steps_and_part_progress_until_the_run_ends(webserver):
    url, answers = webserver
    step = "allocation_parts.solve_part[part_0]"
    cursors: list[str | None] = []

    def last(body: dict[str, Any]) -> dict[str, Any]:
        cursors.append(body["variables"]["cursor"])
        return page("SUCCESS", [{"__typename": "ExecutionStepSuccessEvent", "stepKey": step, "message": ""}], "3")(body)

    answers += [page("QUEUED", [], "0"),
                page("STARTED", [{"__typename": "ExecutionStepStartEvent", "stepKey": step, "message": ""},
                                 {"__typename": "LogMessageEvent", "stepKey": step,
                                  "message": "part 1/1 solve    2.0s of 5.0s objective 10"}], "2"),
                last]
    parts: list[tuple[int, int, float, float]] = []
    notices: list[str] = []
    events = RunEvents(on_part=lambda *p: parts.append(p), on_notice=notices.append)
    assert follow_through(url, "r1", events) == "SUCCESS"
    assert events.steps == {step: "done"} and parts == [(1, 1, 2.0, 5.0)]
    assert cursors == ["2"]  # each look asks only for the events after the last one seen
    assert notices == ["run r1 is queued (one run per month; the queue starts it when it may)."]


def test_a_run_deleted_while_followed_ends_the_follower_with_one_sentence(webserver):
    url, answers = webserver
    answers.append(lambda body: {"data": {"runOrError": {"__typename": "RunNotFoundError"}, "logsForRun": {}}})
    with pytest.raises(RunError, match="Run r1 was deleted while this command followed it"):
        follow_through(url, "r1", RunEvents())
