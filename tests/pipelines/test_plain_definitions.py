"""The product's Definitions without the opt-in engine: Dagster's public API only, the same product."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

import engine.definitions
import pipelines.definitions
from pipelines.executor import lease_beating_executor
from resources.settings import SettingsError

OPT_IN = ("engine", "dagster_celery", "celery")


def test_the_plain_definitions_load_neither_the_engine_nor_celery():
    names = f"sorted({{m.split('.')[0] for m in sys.modules}} & {set(OPT_IN)!r})"
    done = subprocess.run([sys.executable, "-c", f"import sys, pipelines; print({names})"],
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]"


def test_the_plain_and_the_opted_in_definitions_hold_the_same_product():
    plain, opted = pipelines.definitions.defs, engine.definitions.defs
    assert sorted(plain.resolve_all_asset_keys()) == sorted(opted.resolve_all_asset_keys())
    assert sorted(job.name for job in plain.resolve_all_job_defs()) == sorted(job.name for job in opted.resolve_all_job_defs())
    assert ([sensor.name for sensor in plain.sensors or []] == [sensor.name for sensor in opted.sensors or []]
            and len(plain.sensors or []) == 5)
    assert plain.resources is not None and opted.resources is not None and plain.resources.keys() == opted.resources.keys()
    assert plain.executor is not opted.executor


def test_the_plain_executor_refuses_celery_naming_the_engine(monkeypatch):
    for name, value in {"BATCH_ADMIN_HOME": "/srv/batch", "BATCH_ADMIN_POSTGRES_URL": "postgresql://batch@db/batch",
                        "BATCH_ADMIN_EXECUTOR": "celery", "BATCH_ADMIN_CELERY_BROKER": "pyamqp://guest@b:5672//"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="BATCH_ADMIN_EXECUTOR=celery needs the opt-in engine.*engine.definitions"):
        lease_beating_executor(SimpleNamespace(instance=None))  # type: ignore[arg-type]
