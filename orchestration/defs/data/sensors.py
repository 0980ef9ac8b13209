"""New data starts ingestion: the landing-zone sensor and the job it launches."""


import json
from pathlib import Path

import dagster as dg

from orchestration.resources import MmclWorkspace

MANIFESTS = ("manifest.jsonl", "manifest.csv")

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets("raw_drop", "validated_drop", "dataset_version", "embedding_drift"),
    description="New drops -> ingest -> GX gate -> new DVC dataset version -> drift of the new data against the "
                "champion's reference embeddings (the drift check failing starts retrain_job).",
    tags={"mmcl/stage": "ingest"},
)


def landed_drops(landing: Path) -> list[str]:
    """Drop folders that have fully landed (a manifest inside). Drops are renamed into place, and
    hidden folders are drops still being written, so a drop is never seen half-copied."""
    if not landing.is_dir():
        return []
    return sorted(p.name for p in landing.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and any((p / m).is_file() for m in MANIFESTS))


def ingested_drops(workspace: MmclWorkspace) -> set[str]:
    """Drops this workspace has already taken in (ingested into raw/, or rejected whole at ingest)."""
    names: set[str] = set()
    for folder in (workspace.path("raw"), workspace.path("rejected", "ingest")):
        if folder.is_dir():
            names |= {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return names


@dg.sensor(job=ingest_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the workspace's landing zone; each new drop folder (one with a manifest) starts "
                       "ingest_job once. A drop counts as new when the workspace has not ingested it yet (raw/, "
                       "rejected/ingest/) and no earlier tick requested it (cursor: the drop names requested), so "
                       "a first start on a used workspace does not ingest everything again.")
def new_drop_sensor(context: dg.SensorEvaluationContext, workspace: MmclWorkspace):
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    landed = landed_drops(workspace.landing)
    done = ingested_drops(workspace)
    new = [name for name in landed if name not in seen and name not in done]
    if not new:
        return dg.SkipReason(f"no new drop in {workspace.landing} ({len(landed)} landed, {len(done & set(landed))} "
                             "already ingested)")
    context.update_cursor(json.dumps(sorted(seen | set(new))))
    return dg.RunRequest(run_key=f"drops:{','.join(new)}", tags={"mmcl/new_drops": ",".join(new)[:200]})
