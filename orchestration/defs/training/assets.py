"""Training assets: teacher_scores (frozen-teacher embeddings per dataset version) -> trained_model (Pipes)."""


import json
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.training.config import TrainModelConfig
from orchestration.helpers import code_version
from orchestration.model_records import card_path, record_training
from orchestration.resources import REPO_ROOT, MmclProfile, MmclWorkspace

GROUP = "training"
POOL = "mmcl_training"  # one slot (instance config): two trainings never share the 2 cores / one GPU


@dg.asset(
    group_name=GROUP, kinds={"sentence_transformers", "numpy"},
    code_version=code_version("mmcl/objectives/teacher.py", "mmcl/train/teachers.py",
                              "orchestration/defs/training/assets.py"),
    description="The frozen teacher's embeddings (KDMCSE) for the profile's training config on this dataset version, "
                "computed by the same mmcl function and under the same cache key as training "
                "(mmcl.train.teachers.prepare_teacher), in cache/teacher/, so training reads this file instead of "
                "embedding again. A config without a teacher (data.teacher.kind: none) records that no teacher is "
                "used; a model's lineage names the teacher files its training actually read.",
)
def teacher_scores(context: dg.AssetExecutionContext, dataset_version: dict[str, Any], workspace: MmclWorkspace,
                   profile: MmclProfile) -> dg.Output[dict[str, Any]]:
    from mmcl.config import load_config
    from mmcl.train.teachers import prepare_teacher

    cache = workspace.path("cache", "teacher")  # = $MMCL_CACHE_DIR/teacher of the training process
    cfg = load_config(REPO_ROOT / profile.train_config, [*profile.train_overrides,
                                                         f"data.data_dir={dataset_version['train_view']}",
                                                         f"data.teacher.cache_dir={cache}"])
    md5 = dataset_version["md5"]
    if cfg.data.teacher.kind == "none":
        reason = f"{profile.train_config} (objective {cfg.objective.name}) uses no teacher (data.teacher.kind: none)"
        context.log.info(reason)
        return dg.Output({"used": False, "reason": reason, "dataset_md5": md5}, data_version=dg.DataVersion("none"),
                         metadata={"used": "False", "reason": reason, "dataset_md5": md5})
    info = prepare_teacher(cfg.data)
    context.log.info(f"teacher {info['name']}: {info['rows']} rows -> {info['files']}")
    return dg.Output({"used": True, **info, "dataset_md5": md5},
                     data_version=dg.DataVersion(",".join(Path(f).stem for f in info["files"].values())), metadata={
                         "used": "True", "teacher": str(info["name"]), "model": str(info["model"]),
                         "rows": dg.MetadataValue.json(info["rows"]), "dim": dg.MetadataValue.json(info["dim"]),
                         "files": dg.MetadataValue.json(info["files"]), "dataset_md5": md5})


def _train_view(workspace: MmclWorkspace, dataset_version: dict[str, Any], pinned: str | None) -> tuple[str, str]:
    """(md5, train view folder) of the latest version, or of the pinned md5 / unique prefix."""
    if not pinned or dataset_version["md5"].startswith(pinned):
        return dataset_version["md5"], dataset_version["train_view"]
    matches = sorted(workspace.path("train_views").glob(f"{pinned.removesuffix('.dir')}*"))
    if len(matches) != 1:
        raise dg.Failure(f"dataset_version {pinned!r} matches {len(matches)} exported versions in "
                         f"{workspace.path('train_views')}: give the full DVC md5 of a version this workspace made")
    return f"{matches[0].name}.dir", str(matches[0])


@dg.asset(
    group_name=GROUP, kinds={"pytorch", "lightning"}, pool=POOL,
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    code_version=code_version("mmcl/train", "mmcl/objectives", "mmcl/model.py", "mmcl/encoders", "mmcl/config.py",
                              "orchestration/pipes_entry.py"),
    description="`python -m orchestration.pipes_entry train` (mmcl.train via Dagster Pipes) on the dataset version's "
                "train view: Lightning fit, model.pt + resolved config + metrics in `runs/<name>-<config hash>/`. A "
                "retry re-launches the same config, which resumes from checkpoints/last.ckpt. The run is registered "
                "as a challenger, with its lineage record and model card. One training at a time (pool mmcl_training).",
)
def trained_model(context: dg.AssetExecutionContext, config: TrainModelConfig, dataset_version: dict[str, Any],
                  teacher_scores: dict[str, Any], workspace: MmclWorkspace, profile: MmclProfile,
                  pipes: dg.ResourceParam[dg.PipesClient]) -> dg.Output[dict[str, Any]]:
    from mmcl.config import load_config
    from mmcl.errors import UserError

    md5, view = _train_view(workspace, dataset_version, config.dataset_version)
    sets = [*profile.train_overrides, f"data.data_dir={view}", f"runs_dir={workspace.path('runs')}", *config.sets()]
    config_file = REPO_ROOT / (config.config_path or profile.train_config)
    try:  # a bad value fails here, at once, with mmcl's message: retrying a config error cannot help
        resolved = load_config(config_file, sets)
    except UserError as exc:
        raise dg.Failure(f"the training config is invalid: {exc}", allow_retries=False,
                         metadata={"overrides": dg.MetadataValue.json(sets)}) from None
    context.log.info(f"training {resolved.run_dir().name}: objective {resolved.objective.name}, "
                     f"max_epochs {resolved.train.max_epochs}, max_steps {resolved.train.max_steps}")
    error_file = workspace.path("dagster_io", "errors", f"{context.run_id}-trained_model.json")
    error_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "orchestration.pipes_entry", "train", "--config", str(config_file),
               "--error-file", str(error_file)]
    command += [arg for s in sets for arg in ("--set", s)] + (["--fresh"] if config.fresh else [])
    # `pipes` is the environment's client (resources.training_pipes_client): this command runs as a local
    # subprocess, or (MMCL_ENV=k8s) in a GPU pod, under torchrun when the pod has several GPUs
    try:
        results = pipes.run(command=command, context=context, extras={"dataset_md5": md5}).get_results()
    except Exception:
        if error_file.is_file():  # the training process named a permanent error (config, data): no retry
            error = json.loads(error_file.read_text())
            raise dg.Failure(f"training refused: {error['kind']}: {error['message']}", allow_retries=False) from None
        raise  # infrastructure (OOM, kill, pod lost): the retry policy resumes from last.ckpt
    reported = {k: v.value for k, v in (results[0].metadata or {}).items()} if results else {}
    if "run_dir" not in reported:
        raise dg.Failure("the training process reported no run directory (see the step's stdout/stderr)")
    run_dir = reported["run_dir"]
    model_id = Path(run_dir).name
    card = record_training(workspace, model_id, run_dir, md5)  # teacher: what training recorded it read
    value = {"model_id": model_id, "run_dir": run_dir, "dataset_md5": md5, "config_hash": reported["config_hash"],
             "model_card": card, "training": reported}
    from mmcl.model_card import read_model_lineage

    code = read_model_lineage(model_id, workspace.lineage).get("code") or {}
    resolved_yaml = (Path(run_dir) / "config.yaml").read_text(encoding="utf-8")
    return dg.Output(value, data_version=dg.DataVersion(reported["config_hash"]), metadata={
        **{k: v for k, v in results[0].metadata.items()}, "model_id": model_id, "dataset_md5": md5,
        "model_card": dg.MetadataValue.md(card_path(workspace, model_id).read_text(encoding="utf-8")),
        "model_card_file": dg.MetadataValue.path(str(card_path(workspace, model_id))),
        "resolved_config": dg.MetadataValue.md(f"```yaml\n{resolved_yaml}```"),
        "git_revision": str(code.get("rev") or f"none: {code.get('reason', 'unknown')}") +
                        (" (dirty tree)" if code.get("dirty") else ""),
        "overrides": dg.MetadataValue.json(sets)})
