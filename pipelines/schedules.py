"""Schedules: a monthly planning run for next month."""


import dagster as dg

from batch.months import next_month
from pipelines.jobs import month_tags, plan_job
from resources.settings import Settings


@dg.schedule(cron_schedule="0 6 15 * *", job=plan_job, default_status=dg.DefaultScheduleStatus.RUNNING,
             description="On the 15th, plan next month once its inputs have landed.")
def next_month_planning(context: dg.ScheduleEvaluationContext):
    month = next_month(context.scheduled_execution_time.strftime("%Y-%m"))
    if not (Settings.from_env().landing / month).is_dir():
        return dg.SkipReason(f"No inputs have landed for {month} yet (landing/{month}/).")
    return dg.RunRequest(run_key=f"plan-{month}", partition_key=month, tags=month_tags(month))
