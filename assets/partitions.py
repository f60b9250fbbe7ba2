"""The one monthly partitions definition: keys YYYY-MM, up to and including next month."""

import dagster as dg

# A monthly partition normally appears once its month has ended; an offset of 2 adds the
# current month and the next one, so that planning can happen ahead.
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date="2025-01", fmt="%Y-%m", end_offset=2)
