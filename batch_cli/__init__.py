"""The `batch-admin` command line: a thin layer that parses, calls the core or submits runs, and prints."""
