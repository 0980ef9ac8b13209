"""Retrieval: the champion's search index over the current dataset version (`mmcl search`, `mmcl serve`)."""


from typing import Any

import dagster as dg

from orchestration.helpers import code_version
from orchestration.resources import MmclWorkspace

GROUP = "retrieval"


@dg.asset(
    group_name=GROUP, kinds={"numpy", "pytorch"},
    code_version=code_version("mmcl/index/store.py", "mmcl/train/evaluate.py"),
    description="The champion's index: every image, speech clip and caption of the current dataset version embedded "
                "by the promoted model, in indexes/<model id>/<dataset md5>/ with the model file's sha256. Reused when "
                "that (model, dataset) pair was indexed before, so a rollback serves the old champion's index; "
                "`mmcl search` / `mmcl serve` refuse an index that does not match the champion or the dataset version.",
)
def champion_index(context: dg.AssetExecutionContext, promoted_model: dict[str, Any],
                   dataset_version: dict[str, Any], workspace: MmclWorkspace) -> dg.Output[dict[str, Any]]:
    from mmcl.eval.embedders import configure_threads
    from mmcl.index.store import build_index

    configure_threads()
    meta = build_index(promoted_model["champion"], promoted_model["model_file"], dataset_version["train_view"],
                       dataset_version["md5"], workspace.path("indexes"))
    value = {k: meta[k] for k in ("model_id", "model_sha256", "dataset_md5", "counts", "build_seconds", "folder",
                                  "reused")}
    how = "reused" if value["reused"] else f"built in {value['build_seconds']:.1f} s"
    context.log.info(f"index of {value['model_id']} on {value['dataset_md5']}: {value['counts']} ({how})")
    return dg.Output(value, data_version=dg.DataVersion(f"{value['model_id']}:{value['dataset_md5']}"), metadata={
        "champion": value["model_id"], "dataset_md5": value["dataset_md5"], "reused": str(value["reused"]),
        "build_seconds": float(value["build_seconds"]), **{f"{m}_items": n for m, n in value["counts"].items()},
        "folder": dg.MetadataValue.path(value["folder"])})
