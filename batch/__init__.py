"""The domain core of the monthly batch: months, lifecycle, roles, parameters, plan, metrics, alert rules (no Dagster)."""
