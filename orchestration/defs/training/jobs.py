"""Retraining: the job users launch from the Launchpad, and its weekly schedule."""


import dagster as dg

from orchestration.defs.training.config import TrainModelConfig

RETRAIN_TAGS = {"mmcl/training": "true"}  # run queue: one run with this tag at a time (instance config)

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets("teacher_scores").downstream(),
    description="Retrain on the latest dataset version (or the one named in the config): teacher -> training "
                "(Pipes) -> STS / SentEval / retrieval evaluation -> promotion gate -> reference embeddings -> drift. "
                "Edit ops.trained_model.config in the Launchpad: objective, epochs, lr, batch size, dataset version.",
    config=dg.RunConfig(ops={"trained_model": TrainModelConfig()}),
    tags=RETRAIN_TAGS,
)

weekly_retrain = dg.ScheduleDefinition(
    name="weekly_retrain", job=retrain_job, cron_schedule="0 3 * * 1", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 03:00 UTC: retrain on whatever data arrived during the week.",
)
