"""`batch-admin whatif`: the answer as JSON and as a table, and a refusal as one sentence with exit code 1."""

from __future__ import annotations

import json

from click.testing import CliRunner

from batch.demo_data import generate_month
from batch_cli.main import main
from bench.whatif import month_with_version
from resources.storage import ExportStore
from solvers import SolverParams

MONTH = "2026-12"


def test_whatif_answers_as_json_and_as_a_table_without_writing_a_version(home):
    month_with_version(home, MONTH, generate_month(MONTH, requests=200, resources=20, seed=7),
                       SolverParams(time_limit_s=5.0, seed=7))
    first = ExportStore(home).read_version(MONTH, 1)
    served = first[first["status"] == "allocated"]["request_id"].iloc[0]
    result = CliRunner().invoke(main, ["whatif", MONTH, "--exclude", served, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["version"] == 1 and answer["moves"]["count"] >= 1
    assert answer["after"]["allocated"] <= answer["before"]["allocated"]
    table = CliRunner().invoke(main, ["whatif", MONTH, "--exclude", served], catch_exceptions=False)
    assert "nothing written" in table.stdout and f"{served}:" in table.stdout
    assert ExportStore(home).versions(MONTH) == [1]


def test_an_unknown_resource_is_one_sentence_on_stderr_and_exit_code_1(home):
    month_with_version(home, MONTH, generate_month(MONTH, requests=200, resources=20, seed=7),
                       SolverParams(time_limit_s=5.0, seed=7))
    result = CliRunner().invoke(main, ["whatif", MONTH, "--capacity", "R9999=+2"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: --capacity names resource 'R9999', which is not in 2026-12's resources."


def test_whatif_answers_on_a_locked_month_and_adds_no_audit_entry(home):
    month_with_version(home, MONTH, generate_month(MONTH, requests=200, resources=20, seed=7),
                       SolverParams(time_limit_s=5.0, seed=7))
    locked = CliRunner().invoke(main, ["lock", MONTH, "--actor", "alice", "--admins", "alice"], catch_exceptions=False)
    assert locked.exit_code == 0, locked.output + locked.stderr
    audit = json.loads(CliRunner().invoke(main, ["audit", MONTH, "--json"], catch_exceptions=False).stdout)
    result = CliRunner().invoke(main, ["whatif", MONTH, "--capacity", "R0001=+2", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(CliRunner().invoke(main, ["audit", MONTH, "--json"], catch_exceptions=False).stdout) == audit
    status = json.loads(CliRunner().invoke(main, ["status", MONTH, "--json"], catch_exceptions=False).stdout)
    assert status["lock"]["holder"] == "alice"
