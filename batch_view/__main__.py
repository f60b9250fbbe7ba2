"""`python -m batch_view`: the admin view and the Dagster UI (what `batch-admin ui` runs)."""

from batch_view.server import main

main()
