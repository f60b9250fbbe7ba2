"""The opt-in engine: how runs are launched, queued, preloaded and executed faster than Dagster's
defaults, on Dagster's internals.

The product itself (pipelines/ and below) needs only Dagster's public API: `dagster dev -m pipelines`
serves every asset, job, schedule and sensor, and each run's steps beat the month's lease in the run
worker or in forked processes (pipelines/executor.py). That lease, kept by the control store
(resources/control_store/lock_room.py), is the one authority for "one run per month", with or without
this package; the run queue's tag limits in dagster.yaml only keep a second run of a month waiting.

A deployment opts in by naming the engine's classes in dagster.yaml (the embedded default and
deploy/postgres do) and loading engine.definitions (workspace.yaml does). It then gets:
- run_launcher.py: a daemon's runs forked from a warm server that imported the libraries and the code
  location once (worker_preload.py), seconds off every run;
- run_queue.py: the daemon's look at the run queue every 0.5 s instead of whole seconds;
- instance.py: runs of a malformed, out-of-range or input-less month refused before they exist;
- event_log.py: the embedded default's SQLite event log keeps a connection per shard in each process
  instead of one per event (the instance class's default storage, Dagster's files);
- executor.py and definitions.py: steps on Celery workers (BATCH_ADMIN_EXECUTOR=celery).

Every name taken from Dagster's private modules is imported in internals.py, with why and the Dagster
version it was checked on; tests/engine/test_internals.py pins that list.
"""
