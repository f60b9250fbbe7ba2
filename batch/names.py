"""One name for each thing the product's parts share: run tags, environment variables, the home's folders.

Every other module imports these names from here; none spells one of them again. The names that belong to a
single concept live with it, once: month keys and their parser in batch/months.py (the strict one), phases in
batch/lifecycle.py, allocation statuses and reasons in solvers/schema.py, the export store's paths in
resources/export_paths.py, parameters in batch/params.py.
"""

from __future__ import annotations

# ---------------------------------------------------------------- run tags
# Dagster's own tags the product reads.
PARTITION_TAG = "dagster/partition"
BACKFILL_TAG = "dagster/backfill"
# The product's tags on a run: who started it and why, its signed ticket, its month, the warm worker it ran in.
ACTOR_TAG = "batch_admin/actor"
NOTE_TAG = "batch_admin/note"
MONTH_TAG = "batch_admin/month"
TICKET_TAG = "batch_admin/ticket"
WORKER_TAG = "batch_admin/run_worker"

# The code location of workspace.yaml, as the CLI and the view name it to the Dagster webserver.
CODE_LOCATION = "monthly_batch_admin"
REPOSITORY = "__repository__"  # the name Dagster gives the repository of a Definitions object

# ---------------------------------------------------------------- environment variables (docs/deploy.md)
HOME_VAR = "BATCH_ADMIN_HOME"
POSTGRES_VAR = "BATCH_ADMIN_POSTGRES_URL"
CONTROL_VAR = "BATCH_ADMIN_CONTROL_URL"
IO_BASE_VAR = "BATCH_ADMIN_IO_BASE"
ROLES_VAR = "BATCH_ADMIN_ROLES"
EXECUTOR_VAR = "BATCH_ADMIN_EXECUTOR"
CELERY_BROKER_VAR = "BATCH_ADMIN_CELERY_BROKER"
ACTOR_VAR = "BATCH_ADMIN_ACTOR"
KEY_VAR = "BATCH_ADMIN_KEY"
DEBUG_VAR = "BATCH_ADMIN_DEBUG"
ALERT_WEBHOOK_VAR = "BATCH_ADMIN_ALERT_WEBHOOK"
LEASE_STALE_VAR = "BATCH_ADMIN_LEASE_STALE_S"  # seconds without a heartbeat after which a run's lease is dead
# Where people open the admin view: the deployment's origin (its passkeys are made for it), else the address
# `batch-admin ui` serves it at; the relying-party id of its passkeys.
ORIGIN_VAR = "BATCH_ADMIN_ORIGIN"
VIEW_URL_VAR = "BATCH_ADMIN_VIEW_URL"
RP_ID_VAR = "BATCH_ADMIN_RP_ID"
DAGSTER_HOME_VAR = "DAGSTER_HOME"
# For tests and measurements only.
CRASH_VAR = "BATCH_ADMIN_TEST_CRASH_AT"
EXPORT_PAUSE_VAR = "BATCH_ADMIN_EXPORT_TEST_PAUSE_S"
TRACE_VAR = "BATCH_ADMIN_TRACE_TRANSACTIONS"

# ---------------------------------------------------------------- the home's folders (BATCH_ADMIN_HOME)
DEFAULT_HOME = ".batch_admin"
LANDING_DIR = "landing"
EXPORTS_DIR = "exports"
CACHE_DIR = "cache"
DAGSTER_DIR = "dagster"
CONTROL_DB = "control.db"
