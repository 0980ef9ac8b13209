"""Monitoring assets: the champion's reference embeddings, and the drift of newly arrived data against them.

One caption per image on both sides (the primary caption): an image's five captions are not independent
samples, and the permutation test assumes exchangeable rows.
"""


import random
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.helpers import code_version, read_json, stored_value
from orchestration.resources import MmclCli, MmclProfile, MmclWorkspace

GROUP = "monitoring"
DRIFT_CHECK = "no_embedding_drift"


def _embed(model_file: str, texts: list[str], out: Path) -> tuple[int, int]:
    """Champion text embeddings of `texts` -> out (.npy) and out.txt (the texts, one per line)."""
    import numpy as np

    from mmcl.eval.embedders import load_text_embedder

    emb = load_text_embedder(model_file, show_progress=False).encode(texts)  # [N, D]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.asarray(emb, dtype=np.float32))
    out.with_suffix(".txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    return int(emb.shape[0]), int(emb.shape[1])


@dg.asset(
    group_name=GROUP, kinds={"pytorch", "numpy"},
    code_version=code_version("mmcl/eval/embedders.py", "orchestration/defs/monitoring/assets.py"),
    description="The champion's text embeddings of a fixed probe set: the primary caption of (up to "
                "probe_max_rows, seeded) images of the dataset version it was trained on. The reference every "
                "later drift check compares new data with.",
)
def reference_embeddings(context: dg.AssetExecutionContext, promoted_model: dict[str, Any],
                         workspace: MmclWorkspace, profile: MmclProfile) -> dg.Output[dict[str, Any]]:
    from mmcl.data.flickr import load_flickr_triples
    from mmcl.lineage import LineageStore, record_key

    md5 = promoted_model["dataset_md5"]
    records = sorted(load_flickr_triples(workspace.path("train_views", record_key(md5))), key=lambda r: r.image_id)
    records = random.Random(0).sample(records, min(profile.probe_max_rows, len(records)))
    out = workspace.path("monitoring", "reference", promoted_model["champion"], "text.npy")
    rows, dim = _embed(promoted_model["model_file"], [r.captions[0] for r in records], out)
    drops = LineageStore(workspace.lineage).read("dataset", md5)["source_drops"]
    value = {"champion": promoted_model["champion"], "model_file": promoted_model["model_file"], "dataset_md5": md5,
             "source_drops": drops, "embeddings": str(out), "rows": rows, "dim": dim}
    return dg.Output(value, data_version=dg.DataVersion(f"{promoted_model['champion']}:{md5}"), metadata={
        "champion": value["champion"], "dataset_md5": md5, "rows": rows, "dim": dim,
        "embeddings": dg.MetadataValue.path(str(out)), "source_drops": dg.MetadataValue.json(drops)})


def _new_captions(workspace: MmclWorkspace, drops: list[str]) -> list[str]:
    """Primary caption of every accepted record of `drops`."""
    from mmcl.data.manifest import read_drop

    texts = []
    for name in drops:
        for row in read_drop(workspace.path("validated", name)).rows:
            caption = row.fields.get("caption") or (row.fields.get("captions") or [None])[0]
            if caption:
                texts.append(caption)
    return texts


def _drift_args(ref: str, cur: str, out: Path, profile: MmclProfile, workspace: MmclWorkspace, name: str) -> list[str]:
    args = ["drift", "--reference", ref, "--current", cur, "--output", str(out), "--seed", "0",
            "--alpha", str(profile.drift_alpha), "--permutations", str(profile.drift_permutations),
            "--workspace", str(workspace.path("monitoring", "evidently")), "--name", name]
    return args + ([] if profile.drift_report else ["--no-report"])


@dg.asset(
    group_name=GROUP, kinds={"evidently", "numpy"}, deps=["reference_embeddings"],
    code_version=code_version("mmcl/monitor", "orchestration/defs/monitoring/assets.py"),
    check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset="embedding_drift",
                                   description="the new data's champion embeddings are not drifted from the reference "
                                               "(Evidently classifier + MMD permutation test, Bonferroni); a failure "
                                               "starts retrain_job (drift_retrain_sensor)")],
    description="`mmcl drift` between the reference embeddings and the champion's embeddings of the data that "
                "arrived since the champion's dataset version (drops in the latest version, not in the champion's): "
                "verdict JSON, Evidently report + snapshot in monitoring/evidently (`evidently ui`), drift history PNG.",
)
def embedding_drift(context: dg.AssetExecutionContext, dataset_version: dict[str, Any], workspace: MmclWorkspace,
                    profile: MmclProfile, mmcl: MmclCli):
    reference = stored_value(workspace, "reference_embeddings")
    new_drops = [d for d in dataset_version["source_drops"] if d not in (reference or {}).get("source_drops", [])]
    texts = _new_captions(workspace, new_drops) if reference else []
    status = "no_reference" if not reference else "no_new_data" if not new_drops else \
        "too_few_rows" if len(texts) < 20 else "checked"
    value: dict[str, Any] = {"status": status, "new_drops": new_drops, "rows": len(texts), "drift_detected": False,
                             "champion": (reference or {}).get("champion"), "dataset_md5": dataset_version["md5"]}
    if status == "checked":
        folder = workspace.path("monitoring", "checks", context.run_id[:8])
        _embed(reference["model_file"], texts, folder / "current.npy")
        mmcl.run(_drift_args(reference["embeddings"], str(folder / "current.npy"), folder / "drift.json", profile,
                             workspace, f"{','.join(new_drops)} vs {reference['champion']}"), log=context.log)
        verdict = read_json(folder / "drift.json")
        value.update(drift_detected=bool(verdict["drift_detected"]), verdict=str(folder / "drift.json"),
                     report=(verdict.get("report") or {}).get("html"), plot=verdict.get("plot"),
                     methods={m: {k: r.get(k) for k in ("p_value", "score")} for m, r in verdict["methods"].items()})
    context.log.info(f"drift: {status}, drift_detected={value['drift_detected']} on {len(texts)} rows of {new_drops}")
    yield dg.Output(value, metadata={"status": status, "drift_detected": str(value["drift_detected"]),
                                     "rows": len(texts), "new_drops": dg.MetadataValue.json(new_drops),
                                     **{f"{m}_p_value": float(r["p_value"]) for m, r in value.get("methods", {}).items()
                                        if r.get("p_value") is not None},
                                     **({"verdict": dg.MetadataValue.path(value["verdict"])} if "verdict" in value else {})})
    yield dg.AssetCheckResult(check_name=DRIFT_CHECK, passed=not value["drift_detected"],
                              severity=dg.AssetCheckSeverity.WARN, description=status,
                              metadata={"methods": dg.MetadataValue.json(value.get("methods", {})), "status": status})
