"""How a run's steps reach Celery workers: the queues and the Celery settings that the executor
(engine/executor.py) and `batch-admin worker` (batch_cli/worker.py) share."""

from __future__ import annotations

from typing import Any

# Solve steps run in this Dagster pool (sized to the cores) and, on Celery, in this queue.
SOLVER_POOL = "solver"
SOLVER_QUEUE = SOLVER_POOL
DEFAULT_QUEUE = "default"
QUEUES = (SOLVER_QUEUE, DEFAULT_QUEUE)
# The step's events come back to the run worker as the task's result; `rpc://` sends them over
# the broker itself, so that a deployment needs no second service.
RESULT_BACKEND = "rpc://"
# A worker imports the code location once; its pool processes fork from it with the product loaded.
WORKER_IMPORTS = ["engine.definitions"]

CELERY_SETTINGS: dict[str, Any] = {
    # Steps without a queue of their own (all but the solve parts) go here.
    "task_default_queue": DEFAULT_QUEUE,
    # A step's message is acknowledged when the step has finished, not when it starts: when a whole
    # worker dies (host lost, the worker killed), the broker hands its unfinished steps to another
    # worker, which runs them again. Safe for these steps: outputs go to paths of the run's id and
    # control-store writes are keyed by run id (snapshot, lease).
    "task_acks_late": True,
    # A pool process killed alone (the kernel's OOM killer) fails its step instead (Celery's
    # WorkerLostError, made the step's failure by engine/executor.py): running the same step
    # again would meet the same end, again and again.
    "task_reject_on_worker_lost": False,
    # One step per pool process at a time, nothing reserved: a waiting step stays free for any worker.
    "worker_prefetch_multiplier": 1,
}
