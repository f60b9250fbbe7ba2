"""What the view reads: the deployment's settings, its control store and export store, and the Dagster UI's address."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import dagster as dg
from dagster_graphql import DagsterGraphQLClient

from batch.names import PARTITION_TAG  # noqa: F401  (the view's modules take it from here)
from resources.control_store import ControlStore
from resources.settings import DEFAULT_ROLES_FILE, Settings
from resources.storage import ExportStore

# The Dagster asset keys a month page links to (assets/monthly.py).
MONTH_ASSETS = ("landed_inputs", "validated_inputs", "capacity_plan", "allocation_proposal", "allocation_export",
                "final_allocation")
# The code location of workspace.yaml, and the repository name Dagster gives a Definitions object.
LOCATION = "monthly_batch_admin"
REPOSITORY = "__repository__"
CHECKED_ASSETS = ("validated_inputs", "allocation_proposal", "allocation_export", "final_allocation")


@dataclass(frozen=True)
class DagsterLinks:
    """Addresses of a month's runs, asset partitions and checks in the Dagster UI."""

    base: str

    def runs(self, month: str) -> str:
        return f"{self.base}/runs?{urlencode({'q[]': f'tag:{PARTITION_TAG}={month}'})}"

    def run(self, run_id: str) -> str:
        return f"{self.base}/runs/{quote(run_id)}"

    def asset(self, asset: str, month: str) -> str:
        return f"{self.base}/assets/{quote(asset)}?{urlencode({'view': 'partitions', 'partition': month})}"

    def checks(self, asset: str) -> str:
        return f"{self.base}/assets/{quote(asset)}?view=checks"

    def month(self, month: str) -> dict[str, object]:
        """Every link of one month, for its page and its JSON."""
        return {"runs": self.runs(month), "assets": {a: self.asset(a, month) for a in MONTH_ASSETS},
                "checks": {a: self.checks(a) for a in CHECKED_ASSETS}}


@dataclass
class Sources:
    """One control store (one engine for the process) and the export store of one deployment."""

    settings: Settings
    store: ControlStore
    exports: ExportStore
    dagster: DagsterLinks
    _instance: dg.DagsterInstance | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings, dagster_url: str) -> Sources:
        return cls(settings, ControlStore(settings.control_url, roles_file=str(settings.roles_file)),
                   ExportStore(settings.home, protected=settings.protected_paths()),
                   DagsterLinks(dagster_url.rstrip("/")))

    @property
    def demo(self) -> bool:
        """The embedded default with the shipped roles file: the only place the demo keys count."""
        return self.settings.postgres_url is None and Path(self.settings.roles_file) == DEFAULT_ROLES_FILE

    def instance(self) -> dg.DagsterInstance | None:
        """The deployment's Dagster instance (DAGSTER_HOME, prepared by `batch-admin ui`); None before one exists."""
        if self._instance is None and (self.settings.dagster_home / "dagster.yaml").is_file():
            self._instance = dg.DagsterInstance.from_config(str(self.settings.dagster_home))
        return self._instance

    def submit_run(self, job: str, tags: dict[str, str], run_config: dict[str, Any] | None = None) -> str:
        """Submit a run of the code location's job through the Dagster webserver (its GraphQL API), which
        queues it for the daemon; the run's id."""
        address = urlsplit(self.dagster.base)
        client = DagsterGraphQLClient(address.hostname or "localhost", port_number=address.port, timeout=60)
        return client.submit_job_execution(job, repository_location_name=LOCATION, repository_name=REPOSITORY,
                                           tags=tags, run_config=run_config or None)

    def close(self) -> None:
        self.store.dispose()
        if self._instance is not None:
            self._instance.dispose()
