"""Checks on dataset_version, one property each; both block training on a version that fails them."""


import json
from typing import Any

import dagster as dg

from orchestration.resources import MmclWorkspace


@dg.asset_check(asset="dataset_version", blocking=True,
                description="the workspace's dataset.dvc names this md5, `dvc status` is clean and `dvc status "
                            "--cloud` finds every file on the remote: the version can be restored elsewhere")
def dvc_tracked_and_pushed(dataset_version: dict[str, Any], workspace: MmclWorkspace) -> dg.AssetCheckResult:
    from mmcl.data.versioning import DvcRepo, read_dvc_md5

    repo = DvcRepo(workspace.path())
    dvc_file = workspace.path("dataset.dvc")
    tracked = read_dvc_md5(dvc_file) if dvc_file.is_file() else None
    local = repo.status("dataset.dvc")
    cloud = json.loads(repo.run("status", "--cloud", "--json", "dataset.dvc").stdout or "{}")
    passed = tracked == dataset_version["md5"] and not local and not cloud
    return dg.AssetCheckResult(passed=passed, metadata={
        "dvc_file_md5": str(tracked), "asset_md5": dataset_version["md5"],
        "dvc_status": dg.MetadataValue.json(local), "dvc_status_cloud": dg.MetadataValue.json(cloud),
        "remote": str(dataset_version.get("dvc_remote"))})


@dg.asset_check(asset="dataset_version", blocking=True,
                description="the version has at least 2 train records (a contrastive batch) and reports its "
                            "held-out (dev/test) counts")
def enough_train_records(dataset_version: dict[str, Any]) -> dg.AssetCheckResult:
    splits = dataset_version["splits"] or {}
    return dg.AssetCheckResult(passed=splits.get("train", 0) >= 2,
                               metadata={"splits": dg.MetadataValue.json(splits),
                                         "records": dataset_version["records"]})
