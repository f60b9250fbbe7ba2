"""Which executor a run gets, and what `batch-admin worker` refuses, without any server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from assets.partitions import monthly_partitions
from batch_cli.main import main
from pipelines.executor import chosen_executor
from resources.execution import SOLVER_POOL
from resources.settings import Settings, SettingsError

PRODUCTION = {"BATCH_ADMIN_HOME": "/srv/batch", "BATCH_ADMIN_POSTGRES_URL": "postgresql://batch@db/batch"}
BROKER = "pyamqp://guest@127.0.0.1:5672//"
MONTH = monthly_partitions.get_partition_keys()[-1]
BIN = Path(sys.executable).with_name("batch-admin")


def test_the_automatic_choice_is_the_default_and_exports_no_executor_setting():
    settings = Settings.from_env(PRODUCTION)
    assert settings.executor == "auto" and settings.celery_broker is None
    assert "BATCH_ADMIN_EXECUTOR" not in settings.environment()
    forced = Settings.from_env({**PRODUCTION, "BATCH_ADMIN_EXECUTOR": "in_process"})
    assert forced.environment()["BATCH_ADMIN_EXECUTOR"] == "in_process"


def test_celery_with_a_broker_and_postgres_is_exported_to_every_dagster_process():
    settings = Settings.from_env({**PRODUCTION, "BATCH_ADMIN_EXECUTOR": "Celery", "BATCH_ADMIN_CELERY_BROKER": BROKER})
    assert settings.executor == "celery"
    assert {"BATCH_ADMIN_EXECUTOR": "celery", "BATCH_ADMIN_CELERY_BROKER": BROKER}.items() <= settings.environment().items()


@pytest.mark.parametrize("environ, named", [
    ({**PRODUCTION, "BATCH_ADMIN_EXECUTOR": "celery"}, "BATCH_ADMIN_CELERY_BROKER"),
    ({"BATCH_ADMIN_HOME": "/srv/batch", "BATCH_ADMIN_EXECUTOR": "celery", "BATCH_ADMIN_CELERY_BROKER": BROKER},
     "BATCH_ADMIN_POSTGRES_URL"),
    ({**PRODUCTION, "BATCH_ADMIN_EXECUTOR": "k8s"}, "auto, multiprocess, in_process, celery"),
])
def test_an_incomplete_or_unknown_executor_choice_is_refused_naming_what_is_missing(environ, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(environ)


def test_a_worker_without_a_broker_refuses_to_start_in_one_sentence(monkeypatch):
    monkeypatch.delenv("BATCH_ADMIN_CELERY_BROKER", raising=False)
    monkeypatch.delenv("BATCH_ADMIN_EXECUTOR", raising=False)
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 1
    assert "error: BATCH_ADMIN_CELERY_BROKER is not set" in result.output


def test_a_worker_refuses_queues_it_does_not_know(monkeypatch):
    monkeypatch.setenv("BATCH_ADMIN_CELERY_BROKER", BROKER)
    result = CliRunner().invoke(main, ["worker", "--queues", "solver,fast"])
    assert result.exit_code == 1
    assert "--queues takes solver and/or default, not fast." in result.output


# ---------------------------------------------------------------- auto: in the run worker or forked
@pytest.mark.parametrize("slots, chosen", [(1, "in_process"), (2, "multiprocess")])
def test_auto_executes_in_the_run_worker_only_when_one_solve_runs_at_a_time(tmp_path, slots, chosen):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.event_log_storage.set_concurrency_slots(SOLVER_POOL, slots)
        assert chosen_executor(Settings.from_env({"BATCH_ADMIN_HOME": str(tmp_path)}), instance) == chosen
        forced = Settings.from_env({"BATCH_ADMIN_HOME": str(tmp_path), "BATCH_ADMIN_EXECUTOR": "multiprocess"})
        assert chosen_executor(forced, instance) == "multiprocess"


@pytest.mark.slow
@pytest.mark.parametrize("executor, said", [("in_process", "Executing steps in process"),
                                            ("multiprocess", "Executing steps using multiprocess executor")])
def test_a_month_runs_in_the_run_worker_or_forked_as_asked(home, executor, said):
    env = {**os.environ, "BATCH_ADMIN_HOME": str(home), "BATCH_ADMIN_EXECUTOR": executor}

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    cli("demo-data", MONTH, "--requests", "200", "--resources", "20", "--seed", "5")
    cli("params", MONTH, "--actor", "alice", "--set", "time_limit_s=1")
    run_id = json.loads(cli("run", MONTH, "--actor", "alice", "--json").stdout)["run_id"]

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        engine = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
        messages = [r.event_log_entry.dagster_event.message or "" for r in engine]
        workers = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED).records
    assert any(m.startswith(said) for m in messages), messages
    # Forked: one process per step; in the run worker: none.
    assert (len(workers) > 5) == (executor == "multiprocess")
