"""Drift closes the loop: a failing drift check starts retrain_job; a daily schedule re-checks drift."""


import dagster as dg

from orchestration.defs.monitoring.assets import DRIFT_CHECK
from orchestration.defs.training.jobs import RETRAIN_JOB, RETRAIN_TAGS

DRIFT_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey("embedding_drift"), DRIFT_CHECK)
# check execution states as stored (the status enum is not exported by dagster: its values are)
PLANNED, FAILED = "PLANNED", "FAILED"
NO_CHAMPION = "no_reference"  # embedding_drift's status when no model was ever promoted: train the first one


def _status(record) -> str | None:
    """The `status` metadata of a completed drift check evaluation (checked, no_reference, ...)."""
    evaluation = record.event.asset_check_evaluation if record.event else None
    value = (evaluation.metadata or {}).get("status") if evaluation else None
    return getattr(value, "value", value)

drift_check_job = dg.define_asset_job(
    "drift_check_job", selection=dg.AssetSelection.assets("embedding_drift"),
    description="Re-run the drift check of the data since the champion against its reference embeddings.",
    tags={"mmcl/stage": "monitoring"},
)

daily_drift_check = dg.ScheduleDefinition(
    name="daily_drift_check", job=drift_check_job, cron_schedule="0 6 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING, description="Every day 06:00 UTC: drift check.",
)


@dg.sensor(job_name=RETRAIN_JOB, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description=f"Starts retrain_job when an evaluation of {DRIFT_CHECK} on embedding_drift has completed and "
                       "failed (once per failed evaluation), or found no champion to compare with (the first model: "
                       "tag mmcl/trigger=first_model). Only completed evaluations count: one still planned "
                       "(its run is going on) is read again once it has completed, while later completed ones are "
                       "acted on at once (their run keys keep a retrain from starting twice). Cursor: the id below "
                       "which every evaluation has been acted on.")
def drift_retrain_sensor(context: dg.SensorEvaluationContext):
    last = int(context.cursor or 0)
    history = context.instance.event_log_storage.get_asset_check_execution_history(DRIFT_CHECK_KEY, limit=100)
    cursor, failed, passed, waiting = last, [], 0, None
    for record in sorted((r for r in history if r.id > last), key=lambda r: r.id):
        if record.status.value == PLANNED:
            run = context.instance.get_run_by_id(record.run_id)
            if run is not None and not run.is_finished:
                # in progress: the cursor never moves past it (it is read again once it completed); later
                # completed evaluations are still acted on, their run keys keep a retrain from starting twice
                waiting = record.id if waiting is None else waiting
                continue
        elif record.status.value == FAILED or _status(record) == NO_CHAMPION:
            failed.append(record)
        else:
            passed += 1
        if waiting is None:
            cursor = record.id
    if cursor != last:
        context.update_cursor(str(cursor))
    if not failed:
        return dg.SkipReason(f"no failed drift check since evaluation {last} ({passed} passed"
                             f"{f'; evaluation {waiting} is still running' if waiting else ''})")
    newest = failed[-1]  # one retrain covers every drift seen since the last one
    trigger = "first_model" if _status(newest) == NO_CHAMPION else "drift"
    return dg.RunRequest(run_key=f"{'drift' if trigger == 'drift' else 'first'}-{newest.id}",
                         tags={**RETRAIN_TAGS, "mmcl/trigger": trigger, "mmcl/drift_check_run": newest.run_id,
                               "mmcl/drift_evaluations": ",".join(str(r.id) for r in failed)[:200]})
