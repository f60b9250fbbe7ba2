"""Which executor a run gets, and what `batch-admin worker` refuses, without any server."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from batch_cli.main import main
from resources.settings import Settings, SettingsError

PRODUCTION = {"BATCH_ADMIN_HOME": "/srv/batch", "BATCH_ADMIN_POSTGRES_URL": "postgresql://batch@db/batch"}
BROKER = "pyamqp://guest@127.0.0.1:5672//"


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
