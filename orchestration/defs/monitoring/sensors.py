"""Drift closes the loop: a failing drift check starts retrain_job; a daily schedule re-checks drift."""


import dagster as dg

from orchestration.defs.monitoring.assets import DRIFT_CHECK
from orchestration.defs.training.jobs import RETRAIN_TAGS

DRIFT_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey("embedding_drift"), DRIFT_CHECK)

drift_check_job = dg.define_asset_job(
    "drift_check_job", selection=dg.AssetSelection.assets("embedding_drift"),
    description="Re-run the drift check of the data since the champion against its reference embeddings.",
    tags={"mmcl/stage": "monitoring"},
)

daily_drift_check = dg.ScheduleDefinition(
    name="daily_drift_check", job=drift_check_job, cron_schedule="0 6 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING, description="Every day 06:00 UTC: drift check.",
)


@dg.sensor(job_name="retrain_job", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description=f"Starts retrain_job when the latest evaluation of {DRIFT_CHECK} on embedding_drift failed "
                       "(once per failed evaluation). Cursor: the storage id of the last evaluation acted on.")
def drift_retrain_sensor(context: dg.SensorEvaluationContext):
    record = context.instance.get_latest_asset_check_evaluation_record(DRIFT_CHECK_KEY)
    last = int(context.cursor or 0)
    if record is None or record.id <= last:
        return dg.SkipReason("no new drift check evaluation")
    context.update_cursor(str(record.id))
    evaluation = record.event.asset_check_evaluation if record.event else None
    if evaluation is None or evaluation.passed:
        return dg.SkipReason(f"drift check {record.id} passed (run {record.run_id})")
    return dg.RunRequest(run_key=f"drift-{record.id}",
                         tags={**RETRAIN_TAGS, "mmcl/trigger": "drift", "mmcl/drift_check_run": record.run_id})
