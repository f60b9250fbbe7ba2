"""The one monthly partitions definition: keys YYYY-MM, up to and including next month."""

import dagster as dg

from batch.months import FIRST_MONTH, MONTHS_AHEAD

# A monthly partition normally appears once its month has ended; the offset adds the current
# month and the months ahead, so that planning can happen ahead (batch.months.planned_months).
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, fmt="%Y-%m",
                                                    end_offset=1 + MONTHS_AHEAD)
