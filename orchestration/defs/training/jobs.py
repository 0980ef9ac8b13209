"""Retraining: the job users launch from the Launchpad, and its weekly schedule.

retrain_job is built per profile (`build_retrain_job`, called by orchestration.definitions.build_defs): its
Launchpad opens with the values the profile's next run would use, and those differ between profiles.
"""


import dagster as dg

from orchestration.defs.training.config import launchpad_defaults
from orchestration.resources import REPO_ROOT

RETRAIN_TAGS = {"mmcl/training": "true"}  # run queue: one run with this tag at a time (instance config)
RETRAIN_JOB = "retrain_job"


def build_retrain_job(train_config: str, train_overrides: list[str]):
    defaults = launchpad_defaults(train_config, train_overrides, REPO_ROOT)
    caps = ", ".join(train_overrides) or "none"
    return dg.define_asset_job(
        RETRAIN_JOB,
        selection=dg.AssetSelection.assets("teacher_scores").downstream(),
        description="Retrain on the latest dataset version (or the one named in the config): teacher -> training "
                    "(Pipes) -> STS / SentEval / retrieval evaluation -> promotion gate -> reference embeddings -> "
                    "drift. Edit ops.trained_model.config in the Launchpad: every field shows the value the run "
                    f"takes. Profile settings applied before it: {caps}.",
        config=dg.RunConfig(ops={"trained_model": defaults}),
        tags=RETRAIN_TAGS,
    )


weekly_retrain = dg.ScheduleDefinition(
    name="weekly_retrain", job_name=RETRAIN_JOB, cron_schedule="0 3 * * 1", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 03:00 UTC: retrain on whatever data arrived during the week.",
)
