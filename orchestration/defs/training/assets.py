"""Training assets: teacher_scores (frozen-teacher embeddings per dataset version) -> trained_model (Pipes)."""


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
    code_version=code_version("mmcl/objectives/teacher.py", "orchestration/defs/training/assets.py"),
    description="KDMCSE's frozen teacher: unit-norm embeddings of every caption of the dataset version (teacher "
                "similarities are their dot products), cached as .npy under cache/teacher/ keyed by teacher name and "
                "a fingerprint of (id, caption) pairs, so each dataset version is embedded once. The training "
                "process gets the same cache through MMCL_CACHE_DIR.",
)
def teacher_scores(context: dg.AssetExecutionContext, dataset_version: dict[str, Any], workspace: MmclWorkspace,
                   profile: MmclProfile) -> dg.Output[dict[str, Any]]:
    import numpy as np

    from mmcl.data.flickr import load_flickr_triples
    from mmcl.objectives.teacher import cached_teacher_embeddings, dataset_fingerprint, sentence_encoder

    records = load_flickr_triples(dataset_version["train_view"])
    ids = [f"{r.image_id}#{k}" for r in records for k in range(len(r.captions))]
    texts = [c for r in records for c in r.captions]
    name, cache = f"{profile.teacher}-text", workspace.path("cache", "teacher")
    file = cache / f"{name}-{dataset_fingerprint(ids, texts)[:20]}.npy"
    hit, teacher = file.is_file(), []

    def encode(batch: list[str]):  # the teacher loads only on a cache miss
        if not teacher:
            teacher.append(sentence_encoder(profile.teacher))
        return teacher[0](batch)

    emb = cached_teacher_embeddings(ids, texts, encode, name=name, cache_dir=cache, progress=False)  # [N, Dt]
    groups = np.array([i.split("#")[0] for i in ids])[:2000]
    sim = emb[:2000] @ emb[:2000].T  # [n, n] teacher similarities
    same = (groups[:, None] == groups[None, :]) & ~np.eye(len(groups), dtype=bool)
    value = {"teacher": profile.teacher, "name": name, "file": str(file), "rows": int(emb.shape[0]),
             "dim": int(emb.shape[1]), "dataset_md5": dataset_version["md5"], "cache_hit": hit}
    context.log.info(f"teacher {name}: {emb.shape} ({'cache hit' if hit else 'computed'}) -> {file}")
    return dg.Output(value, data_version=dg.DataVersion(file.stem), metadata={
        "teacher": profile.teacher, "rows": value["rows"], "dim": value["dim"], "cache_hit": str(hit),
        "file": dg.MetadataValue.path(str(file)), "dataset_md5": dataset_version["md5"],
        "mean_sim_same_image": float(sim[same].mean()) if same.any() else float("nan"),
        "mean_sim_other_images": float(sim[~same & ~np.eye(len(groups), dtype=bool)].mean())})


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
                "train view: Lightning fit, model.pt + resolved config + metrics in runs/<name>-<config hash>/. A "
                "retry re-launches the same config, which resumes from checkpoints/last.ckpt. The run is registered "
                "as a challenger, with its lineage record and model card. One training at a time (pool mmcl_training).",
)
def trained_model(context: dg.AssetExecutionContext, config: TrainModelConfig, dataset_version: dict[str, Any],
                  teacher_scores: dict[str, Any], workspace: MmclWorkspace, profile: MmclProfile,
                  pipes: dg.ResourceParam[dg.PipesClient]) -> dg.Output[dict[str, Any]]:
    md5, view = _train_view(workspace, dataset_version, config.dataset_version)
    sets = [*profile.train_overrides, f"data.data_dir={view}", f"runs_dir={workspace.path('runs')}", *config.sets()]
    command = [sys.executable, "-m", "orchestration.pipes_entry", "train",
               "--config", str(REPO_ROOT / (config.config_path or profile.train_config))]
    command += [arg for s in sets for arg in ("--set", s)] + (["--fresh"] if config.fresh else [])
    # `pipes` is the environment's client (resources.training_pipes_client): this command runs as a local
    # subprocess, or (MMCL_ENV=k8s) in a GPU pod, under torchrun when the pod has several GPUs
    results = pipes.run(command=command, context=context, extras={"dataset_md5": md5}).get_results()
    reported = {k: v.value for k, v in (results[0].metadata or {}).items()} if results else {}
    if "run_dir" not in reported:
        raise dg.Failure("the training process reported no run directory (see the step's stdout/stderr)")
    run_dir = reported["run_dir"]
    model_id = Path(run_dir).name
    teacher = {k: teacher_scores[k] for k in ("teacher", "name", "file", "rows", "dim")}
    card = record_training(workspace, model_id, run_dir, md5, teacher)
    value = {"model_id": model_id, "run_dir": run_dir, "dataset_md5": md5, "config_hash": reported["config_hash"],
             "model_card": card, "training": reported}
    return dg.Output(value, data_version=dg.DataVersion(reported["config_hash"]), metadata={
        **{k: v for k, v in results[0].metadata.items()}, "model_id": model_id, "dataset_md5": md5,
        "model_card": dg.MetadataValue.path(str(card_path(workspace, model_id))),
        "overrides": dg.MetadataValue.json(sets)})
