"""champion_job: a person forces a promotion or rolls the champion back, from the Launchpad."""


import dagster as dg

from orchestration.defs.evaluation.assets import PromotionAction, PromotionConfig

champion_job = dg.define_asset_job(
    "champion_job",
    selection=dg.AssetSelection.assets("promoted_model").downstream(),
    description="Override the promotion gate by hand: action force (make model_id the champion) or rollback (restore "
                "the previous champion). requested_by and reason are required and recorded in the registry events and "
                "the model's lineage; the reference embeddings and the drift check then follow the new champion.",
    config=dg.RunConfig(ops={"promoted_model": PromotionConfig(action=PromotionAction.force)}),
    tags={"mmcl/stage": "promotion"},
)
