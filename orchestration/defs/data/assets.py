"""Data assets: landing zone -> raw_drop -> validated_drop (GX checks, blocking) -> dataset_version (DVC md5).

Each asset calls mmcl (mmcl.data.landing, mmcl.validate, mmcl.data.versioning) and records what it did;
the same steps are `mmcl data ingest`, `mmcl validate` and `mmcl data version` on the command line.
"""


from typing import Any

import dagster as dg

from orchestration.defs.data.gx_checks import check_results, check_specs
from orchestration.helpers import code_version, scalar_metadata
from orchestration.resources import MmclProfile, MmclWorkspace

GROUP = "data"


def _pending_drops(ws: MmclWorkspace) -> list[str]:
    """Raw drops not yet through the gate (neither accepted nor rejected by validation)."""
    raw = ws.path("raw")
    names = sorted(p.name for p in raw.iterdir() if p.is_dir() and not p.name.startswith(".")) if raw.is_dir() else []
    return [n for n in names if not (ws.path("validated", n).exists() or ws.path("rejected", "validate", n).exists())]


@dg.asset(
    group_name=GROUP, kinds={"python", "json"},
    code_version=code_version("mmcl/data/landing.py", "mmcl/data/manifest.py", "orchestration/defs/data/assets.py"),
    description="New drops of the landing zone, ingested: canonical manifest.jsonl with sha256 per media file and "
                "the parse problems of each row kept for validation. A drop whose manifest cannot be read at all "
                "is rejected whole (`rejected/ingest/<drop>/rejection.json`). Value: the drops awaiting validation.",
    check_specs=[dg.AssetCheckSpec("drops_readable", asset="raw_drop",
                                   description="every new drop's manifest could be read as records")],
)
def raw_drop(context: dg.AssetExecutionContext, workspace: MmclWorkspace) -> dg.Output[dict[str, Any]]:
    from mmcl.data.landing import ingest_drops

    landing = workspace.landing
    landing.mkdir(parents=True, exist_ok=True)
    has_drops = any(p.is_dir() and not p.name.startswith(".") for p in landing.iterdir())
    # an empty landing zone is not a drop: list_drops would take the folder itself for one
    results = ingest_drops([landing], workspace.path("raw"), workspace.path("rejected", "ingest")) if has_drops else []
    rejected = [{"drop": r.drop, "reason": r.reason} for r in results if r.status == "rejected"]
    value = {"raw_root": str(workspace.path("raw")), "ingested": [r.drop for r in results if r.status == "ingested"],
             "skipped": [r.drop for r in results if r.status == "skipped"], "rejected": rejected,
             "pending": _pending_drops(workspace)}
    context.log.info(f"ingested {value['ingested']}, pending validation {value['pending']}, rejected {rejected}")
    yield dg.Output(value, metadata={
        "ingested": len(value["ingested"]), "pending": len(value["pending"]), "rejected": len(rejected),
        "records_ingested": sum(r.records for r in results),
        "drops": dg.MetadataValue.md("\n".join(f"- {r.drop}: {r.status}" + (f" ({r.reason})" if r.reason else "")
                                               for r in results) or "(no drop in the landing zone)"),
        "landing_zone": dg.MetadataValue.path(str(landing))})
    yield dg.AssetCheckResult(check_name="drops_readable", passed=not rejected, severity=dg.AssetCheckSeverity.WARN,
                              metadata={"rejected": dg.MetadataValue.json(rejected)})


@dg.asset(
    group_name=GROUP, kinds={"great_expectations", "pandas"}, check_specs=check_specs(),
    code_version=code_version("mmcl/validate", "orchestration/defs/data"),
    description="The pending raw drops through the Great Expectations gate (ephemeral GX context, suites in "
                "mmcl.validate.suites): accepted rows to `validated/<drop>`, failing rows to `quarantine/<drop>` with "
                "their reasons (never silently dropped), unreadable drops to `rejected/validate/<drop>`. Every GX "
                "expectation is a blocking asset check: ERROR (stops the pipeline) when a drop is rejected or too "
                "many rows fail, WARN when a few rows were quarantined.",
)
def validated_drop(context: dg.AssetExecutionContext, raw_drop: dict[str, Any], workspace: MmclWorkspace,
                   profile: MmclProfile):
    from mmcl.validate.gate import Areas, run_gate
    from mmcl.validate.report import write_report

    pending = [workspace.path("raw", name) for name in raw_drop["pending"]]
    dataset = workspace.dataset if (workspace.dataset / "index.jsonl").is_file() else None
    areas = Areas(workspace.path("validated"), workspace.path("quarantine"), workspace.path("rejected", "validate"))
    reports = run_gate(pending, areas=areas, dataset_dir=dataset, media_check=profile.media_check) if pending else []
    report_path = workspace.path("reports", f"validation-{context.run_id[:8]}.json")
    document = write_report(report_path, reports)
    summary = document["summary"]
    for report in reports:
        context.log.info(report.describe())
    value = {"drops": [r.drop for r in reports], "report": str(report_path), "summary": summary,
             "accepted_root": str(areas.accepted), "rejected": [r.drop for r in reports if r.status == "rejected"]}
    yield dg.Output(value, metadata={**scalar_metadata({k: v for k, v in summary.items() if k != "blocking_failed"}),
                                     "report": dg.MetadataValue.path(str(report_path)),
                                     "drops": dg.MetadataValue.json({r.drop: r.status for r in reports})})
    yield from check_results(reports, profile.max_quarantined_fraction)


@dg.asset(
    group_name=GROUP, kinds={"dvc"},
    code_version=code_version("mmcl/data/versioning.py", "mmcl/data/shards.py", "mmcl/lineage.py"),
    description="Every accepted drop as deterministic tar shards (webdataset layout), `dvc add` + `dvc push` to "
                "the workspace's DVC remote. The DataVersion is the DVC md5, so a version is its bytes. Lineage "
                "record (md5, drops, validation summary, row counts, git rev) in lineage/datasets/. Also laid out "
                "as a Flickr8k folder (train_views/<md5>) for `mmcl train --set data.data_dir=...`.",
)
def dataset_version(context: dg.AssetExecutionContext, validated_drop: dict[str, Any], workspace: MmclWorkspace,
                    profile: MmclProfile) -> dg.Output[dict[str, Any]]:
    from mmcl.data.shards import export_flickr_layout
    from mmcl.data.versioning import version_dataset
    from mmcl.lineage import record_key

    workspace.ensure_dvc()
    record = version_dataset(workspace.path("validated"), workspace.dataset, shard_size=profile.shard_size,
                             lineage_dir=workspace.lineage, use_dvc=True, push=True,
                             rejected_root=workspace.path("rejected", "validate"))
    md5 = record["md5"]
    view = workspace.path("train_views", record_key(md5))
    if not view.is_dir():  # one export per version: older versions stay trainable by md5
        export_flickr_layout(workspace.dataset, view)
    counts = record["row_counts"]
    value = {"md5": md5, "dataset_dir": str(workspace.dataset), "train_view": str(view),
             "lineage_file": record["lineage_file"], "source_drops": record["source_drops"],
             "previous_md5": record["previous_md5"], "splits": counts["splits"], "records": counts["records"],
             "git": record["git"], "dvc_remote": record["dvc_remote"]}
    context.log.info(f"dataset version {md5}: {counts['records']} records from {len(record['source_drops'])} drops")
    return dg.Output(value, data_version=dg.DataVersion(md5), metadata={
        "dvc_md5": md5, "records": counts["records"], "shards": counts["shards"],
        "splits": dg.MetadataValue.json(counts["splits"]), "source_drops": dg.MetadataValue.json(record["source_drops"]),
        "previous_md5": str(record["previous_md5"]), "git_rev": record["git"].get("rev") or f"none: {record['git'].get('reason', 'unknown')} (a version is "
                                                     "identified by its DVC md5)",
        "dvc_remote": str(record["dvc_remote"]), "lineage": dg.MetadataValue.path(record["lineage_file"]),
        "validation_totals": dg.MetadataValue.json(record["validation"]["totals"])})
