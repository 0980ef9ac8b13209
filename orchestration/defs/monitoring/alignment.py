"""Alignment drift (issue #17): are a new drop's pairs as well matched, under the champion, as held-out data's?

    promoted_model ─▶ alignment_reference ─▶ champion_change          (re-based reference; CKA old vs new)
    dataset_version ─▶ alignment_drift  (check no_alignment_drift, blocking)   ◀─ alignment_drop_sensor
    teacher_scores ── check training_data_aligned (blocking: trained_model does not run) ◀── alignment_drift

The reference is the champion's embeddings of the held-out rows (dev + test splits) of the dataset version it
was trained on: rows it trained on are better matched than any new row, and would make every new drop look
misaligned. Each new drop is tested on its own (mmcl.monitor.alignment: grouped by image, one-sided
permutation test, Bonferroni over pairs of modalities), so the verdict names the drop. A drop that fails
stays out of training until a person overrides it with a run tag (OVERRIDE_TAG), in every job that trains.
"""

from typing import Any

import dagster as dg

from orchestration.helpers import code_version, read_json, stored_value
from orchestration.model_records import registry
from orchestration.resources import MmclProfile, MmclWorkspace

GROUP = "monitoring"
ALIGNMENT_CHECK = "no_alignment_drift"
TRAINING_GATE = "training_data_aligned"
OVERRIDE_TAG = "mmcl/alignment_override"  # value: comma-separated drop names a person accepts for training
HELD_OUT = ("dev", "test")
CODE = code_version("mmcl/monitor/alignment.py", "mmcl/monitor/model_change.py", "mmcl/monitor/plots.py",
                    "orchestration/defs/monitoring/alignment.py")


def _reference_records(workspace: MmclWorkspace, md5: str) -> list:
    from mmcl.data.flickr import load_flickr_triples
    from mmcl.lineage import record_key

    records = load_flickr_triples(workspace.path("train_views", record_key(md5)))
    return [r for r in records if r.split in HELD_OUT]


@dg.asset(
    group_name=GROUP, kinds={"pytorch", "numpy"}, code_version=CODE,
    description="The champion's embeddings (every modality it has) of the held-out rows (dev + test) of the "
                "dataset version it was trained on: the alignment reference, re-based on every promotion so that "
                "drift is only ever measured between embeddings of one model.",
)
def alignment_reference(context: dg.AssetExecutionContext, promoted_model: dict[str, Any],
                        workspace: MmclWorkspace) -> dg.Output[dict[str, Any]]:
    from mmcl.lineage import LineageStore
    from mmcl.monitor.alignment import embed_records_for_alignment, save_alignment_inputs

    md5, champion = promoted_model["dataset_md5"], promoted_model["champion"]
    records = _reference_records(workspace, md5)
    emb, facts = embed_records_for_alignment(promoted_model["model_file"], records, drop="reference")
    out = workspace.path("monitoring", "alignment", "reference", champion, "reference.npz")
    save_alignment_inputs(out, emb, facts)
    drops = LineageStore(workspace.lineage).read("dataset", md5)["source_drops"]
    rows = {m: int(e.shape[0]) for m, (e, _) in emb.items()}
    value = {"champion": champion, "previous": promoted_model.get("previous"),
             "model_file": promoted_model["model_file"], "dataset_md5": md5, "source_drops": drops,
             "file": str(out), "rows": rows, "items": len(records)}
    context.log.info(f"alignment reference of {champion}: {len(records)} held-out items, rows {rows}")
    return dg.Output(value, data_version=dg.DataVersion(f"{champion}:{md5}"), metadata={
        "champion": champion, "dataset_md5": md5, "items": len(records), "rows": dg.MetadataValue.json(rows),
        "file": dg.MetadataValue.path(str(out))})


@dg.asset(
    group_name=GROUP, kinds={"numpy"}, code_version=CODE,
    description="A promotion is a model change, not data drift: linear CKA and orthogonal Procrustes between the "
                "previous and the new champion's embeddings of the same probe rows (the alignment reference's "
                "items), per modality. The drift references are re-based on the new champion.",
)
def champion_change(context: dg.AssetExecutionContext, alignment_reference: dict[str, Any],
                    workspace: MmclWorkspace) -> dg.Output[dict[str, Any]]:
    from mmcl.data.manifest import write_json
    from mmcl.monitor.alignment import embed_records_for_alignment, load_alignment_inputs
    from mmcl.monitor.model_change import model_change_by_modality

    previous, champion = alignment_reference.get("previous"), alignment_reference["champion"]
    value: dict[str, Any] = {"champion": champion, "previous": previous, "reference_rebased_to": champion}
    if not previous or previous == champion:
        value["status"] = "first_champion"
    else:
        new, _ = load_alignment_inputs(alignment_reference["file"])
        records = _reference_records(workspace, alignment_reference["dataset_md5"])
        old, _ = embed_records_for_alignment(registry(workspace).entry(previous)["model_file"], records)
        change = model_change_by_modality({m: e for m, (e, _) in old.items()}, {m: e for m, (e, _) in new.items()})
        out = workspace.path("monitoring", "alignment", "model_change", f"{previous}_to_{champion}.json")
        write_json(out, change)
        value.update(status="model_change", file=str(out), modalities={
            m: {k: r[k] for k in ("linear_cka", "cka_shuffled_baseline", "procrustes_similarity", "raw_cosine_mean")}
            for m, r in change["modalities"].items()})
    context.log.info(f"champion change {previous} -> {champion}: {value['status']}")
    metadata: dict[str, Any] = {"status": value["status"], "previous": str(previous), "champion": champion}
    for m, r in value.get("modalities", {}).items():
        metadata[f"{m}_linear_cka"] = float(r["linear_cka"])
        metadata[f"{m}_procrustes_similarity"] = float(r["procrustes_similarity"])
    return dg.Output(value, metadata=metadata)


def check_drop(workspace: MmclWorkspace, drop: str, reference: dict[str, Any], alpha: float) -> dict[str, Any]:
    """The alignment verdict of one validated drop against `reference` (cached per champion and drop)."""
    from mmcl.data.manifest import write_json
    from mmcl.errors import DataError
    from mmcl.monitor.alignment import (
        MIN_GROUPS,
        AlignmentSettings,
        alignment_drift,
        embed_records_for_alignment,
        load_alignment_inputs,
        pairs_from_embeddings,
        records_of_drop,
        save_alignment_inputs,
    )
    from mmcl.monitor.plots import plot_alignment

    folder = workspace.path("monitoring", "alignment", "checks", reference["champion"], drop)
    verdict_file = folder / "verdict.json"
    if verdict_file.is_file():
        return read_json(verdict_file)
    records = records_of_drop(workspace.path("validated", drop))
    summary: dict[str, Any] = {"drop": drop, "champion": reference["champion"], "records": len(records)}
    if len(records) < MIN_GROUPS:
        summary.update(status="too_few_rows", drift_detected=False)
    else:
        emb, facts = embed_records_for_alignment(reference["model_file"], records, drop=drop)
        save_alignment_inputs(folder / "current.npz", emb, facts)
        try:
            result = alignment_drift(pairs_from_embeddings(*load_alignment_inputs(reference["file"])),
                                     pairs_from_embeddings(emb, facts), settings=AlignmentSettings(alpha=alpha))
        except DataError as exc:  # too few groups on a side (a small reference): untestable, said, not a crash
            summary.update(status="too_few_rows", reason=str(exc), drift_detected=False)
            write_json(verdict_file, summary)
            return summary
        plot = plot_alignment(result, folder / "alignment.png")
        write_json(folder / "result.json", result)
        summary.update(status="checked", drift_detected=result["drift_detected"], plot=str(plot),
                       result=str(folder / "result.json"), decision_rule=result["decision_rule"],
                       test=result["test"], suspects=result["suspects"][:10],
                       pairs={n: {k: p[k] for k in ("score", "p_value", "threshold", "drift_detected",
                                                    "reference_mean_similarity", "current_mean_similarity")}
                              for n, p in result["pairs"].items()})
    write_json(verdict_file, summary)
    return summary


def _new_drops(dataset_drops: list[str], reference: dict[str, Any] | None) -> list[str]:
    return [d for d in dataset_drops if d not in (reference or {}).get("source_drops", [])]


@dg.asset(
    group_name=GROUP, kinds={"numpy"}, code_version=CODE,
    check_specs=[dg.AssetCheckSpec(
        ALIGNMENT_CHECK, asset="alignment_drift", blocking=True,
        description="Every new drop's pairs are as well matched under the champion as its held-out reference "
                    "(one-sided permutation test per pair of modalities, Bonferroni). Fails (ERROR) on alignment "
                    "drift; the drift is not retrained on: training_data_aligned keeps the drop out of training "
                    f"until a person launches the run with tag {OVERRIDE_TAG}=<drop>[,<drop>...].")],
    description="Alignment drift of each drop that arrived since the champion's dataset version: champion "
                "embeddings of its pairs (caption-image, caption-speech, image-speech) against the alignment "
                "reference; per-pair score, p-value, threshold, verdict, the most out-of-line rows (drop, row "
                "id, caption, image) and a density plot per drop.",
)
def alignment_drift(context: dg.AssetExecutionContext, dataset_version: dict[str, Any], workspace: MmclWorkspace,
                    profile: MmclProfile):
    from mmcl.monitor.alignment import suspects_markdown

    reference = stored_value(workspace, "alignment_reference")
    drops = _new_drops(dataset_version["source_drops"], reference) if reference else []
    verdicts = {d: check_drop(workspace, d, reference, profile.drift_alpha) for d in drops}
    drifted = sorted(d for d, v in verdicts.items() if v["drift_detected"])
    status = "no_reference" if not reference else "no_new_data" if not drops else "checked"
    value = {"status": status, "champion": (reference or {}).get("champion"), "dataset_md5": dataset_version["md5"],
             "drops": {d: {k: v.get(k) for k in ("status", "drift_detected", "plot", "result", "pairs")}
                       for d, v in verdicts.items()}, "drifted": drifted}
    context.log.info(f"alignment: {status}; drifted drops {drifted} of {drops}")
    metadata: dict[str, Any] = {"status": status, "drifted_drops": dg.MetadataValue.json(drifted),
                                "verdicts": dg.MetadataValue.json(value["drops"])}
    for d, v in verdicts.items():
        for pair, p in (v.get("pairs") or {}).items():
            for key in ("score", "p_value", "threshold"):
                metadata[f"{d}/{pair}/{key}"] = float(p[key])
            metadata[f"{d}/{pair}/verdict"] = "DRIFT" if p["drift_detected"] else "ok"
        if v.get("plot"):
            metadata[f"{d}/plot"] = dg.MetadataValue.path(v["plot"])
    suspects = [s for d in (drifted or list(verdicts)) for s in verdicts[d].get("suspects", [])]
    if suspects:
        metadata["top_suspects"] = dg.MetadataValue.md(suspects_markdown(suspects, limit=15))
    yield dg.Output(value, metadata=metadata)
    yield dg.AssetCheckResult(
        check_name=ALIGNMENT_CHECK, passed=not drifted, severity=dg.AssetCheckSeverity.ERROR,
        description=f"alignment drift in {drifted}" if drifted else status,
        metadata={k: v for k, v in metadata.items() if k != "verdicts"})


@dg.asset_check(
    asset="teacher_scores", blocking=True, additional_deps=["alignment_drift"],
    description="The dataset version about to be trained on holds no drop that failed the alignment check "
                f"(checked here if it has not been yet). ERROR blocks trained_model. Override: launch the run with "
                f"tag {OVERRIDE_TAG}=<drop>[,<drop>...] naming each drop a person has looked at and accepts.",
)
def training_data_aligned(context: dg.AssetCheckExecutionContext, teacher_scores: dict[str, Any],
                          workspace: MmclWorkspace, profile: MmclProfile) -> dg.AssetCheckResult:
    from mmcl.lineage import LineageStore

    reference = stored_value(workspace, "alignment_reference")
    if not reference:
        return dg.AssetCheckResult(passed=True, description="no champion yet: nothing to compare alignment with",
                                   metadata={"status": "no_reference"})
    drops = LineageStore(workspace.lineage).read("dataset", teacher_scores["dataset_md5"])["source_drops"]
    verdicts = {d: check_drop(workspace, d, reference, profile.drift_alpha) for d in _new_drops(drops, reference)}
    drifted = sorted(d for d, v in verdicts.items() if v["drift_detected"])
    tag = context.run.tags.get(OVERRIDE_TAG, "")
    overridden = sorted(d for d in drifted if d in {t.strip() for t in tag.split(",")})
    blocked = [d for d in drifted if d not in overridden]
    if overridden:
        context.log.warning(f"alignment drift overridden by run tag {OVERRIDE_TAG}: {overridden}")
    return dg.AssetCheckResult(
        passed=not blocked, severity=dg.AssetCheckSeverity.ERROR,
        description=(f"blocked: alignment drift in {blocked}; override with tag {OVERRIDE_TAG}" if blocked
                     else f"overridden by a person: {overridden}" if overridden else "no new drop has alignment drift"),
        metadata={"blocked": dg.MetadataValue.json(blocked), "overridden": dg.MetadataValue.json(overridden),
                  "checked": dg.MetadataValue.json(sorted(verdicts)), "champion": reference["champion"],
                  "dataset_md5": teacher_scores["dataset_md5"]})


alignment_check_job = dg.define_asset_job(
    "alignment_check_job", selection=dg.AssetSelection.assets("alignment_drift"),
    description="Alignment drift of the drops since the champion's dataset version.",
    tags={"mmcl/stage": "monitoring"},
)


@dg.asset_sensor(asset_key=dg.AssetKey("dataset_version"), job=alignment_check_job, minimum_interval_seconds=30,
                 default_status=dg.DefaultSensorStatus.RUNNING,
                 description="Every new dataset version gets its alignment check (ingest_job does not include it). "
                             "A failure is not a reason to retrain: it blocks training (training_data_aligned).")
def alignment_drop_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    return dg.RunRequest(run_key=f"alignment-{asset_event.run_id}-{asset_event.timestamp}")

