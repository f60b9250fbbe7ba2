"""The `batch-admin` commands, one module per thing an admin does: month, run, review, lifecycle, people,
exports, service. Each module's COMMANDS are added to the group in batch_cli/main.py."""
