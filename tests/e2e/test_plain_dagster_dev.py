"""A plain `dagster dev` from the repository's files, with no setting of the product in the environment,
serves the embedded default as `batch-admin ui` does: its sensors tick and its log shows no error. So does
`dagster dev -m pipelines` on an instance that names none of the opt-in engine's classes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import yaml

from batch_cli.instance import EMBEDDED_YAML, WORKSPACE_YAML
from pipelines.sensors import ACTUALS_SENSOR, FAILED_CHECKS_SENSOR, LOCKS_SENSOR, OUTBOX_SENSOR, RUN_FAILURE_SENSOR
from tests.e2e.conftest import BIN, ENV_NAMES, STARTUP_TIMEOUT_S, Services, _wait_ready, free_port, stop

SENSORS = (RUN_FAILURE_SENSOR, FAILED_CHECKS_SENSOR, LOCKS_SENSOR, ACTUALS_SENSOR, OUTBOX_SENSOR)
MONTH = "2026-12"


def plain_env() -> dict[str, str]:
    """The environment of a shell where nobody set anything of the product or of Dagster."""
    return {name: value for name, value in os.environ.items() if name not in ENV_NAMES and not name.startswith("DAGSTER")}


def ticked(log: str, sensor: str) -> bool:
    return f"Sensor {sensor} skipped" in log or f"Completed a tick for sensor {sensor}" in log


# What a dagster.yaml names of the opt-in engine (engine/): without them the instance is Dagster's own.
ENGINE_SETTINGS = ("instance_class", "run_launcher", "run_coordinator")


def without_the_engine(dagster_yaml: str) -> str:
    """The embedded dagster.yaml without the engine's classes."""
    config = yaml.safe_load(dagster_yaml)
    assert all(config[name]["module"].startswith("engine.") for name in ENGINE_SETTINGS)
    return yaml.safe_dump({name: value for name, value in config.items() if name not in ENGINE_SETTINGS})


@pytest.mark.slow
@pytest.mark.parametrize("target, engine", [(["-w", "workspace.yaml"], True), (["-m", "pipelines"], False)],
                         ids=["workspace_with_the_engine", "pipelines_without_the_engine"])
def test_plain_dagster_dev_serves_the_embedded_default_and_its_sensors_tick_without_errors(tmp_path, target, engine):
    root = tmp_path / "clone"
    root.mkdir()
    shutil.copyfile(WORKSPACE_YAML, root / WORKSPACE_YAML.name)
    instance_yaml = EMBEDDED_YAML.read_text()
    (root / EMBEDDED_YAML.name).write_text(instance_yaml if engine else without_the_engine(instance_yaml))
    env = plain_env()
    subprocess.run([str(BIN / "batch-admin"), "demo-data", MONTH, "--requests", "200", "--resources", "20"],
                   cwd=root, env=env, check=True, capture_output=True, timeout=300)
    log = tmp_path / "dagster_dev.log"
    services = Services(home=root / ".batch_admin", port=free_port(), log_dir=tmp_path)
    with log.open("wb") as out:
        services.procs.append(subprocess.Popen(
            [str(BIN / "dagster"), "dev", *target, "-h", "127.0.0.1", "-p", str(services.port)],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        _wait_ready(services)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not all(ticked(log.read_text(errors="replace"), sensor) for sensor in SENSORS):
            assert time.monotonic() < deadline, f"not every sensor ticked:\n{log.read_text(errors='replace')}"
            time.sleep(1)
        text = log.read_text(errors="replace")
    finally:
        stop(services)
    errors = [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line or "EnvVar" in line]
    assert errors == [], text
    # The sensors read the embedded home's control store, the one `batch-admin demo-data` made here.
    assert "0 lock(s) checked" in text and (root / ".batch_admin" / "control.db").is_file()
