"""One training run: resolve config -> run directory -> fit (resuming if a checkpoint exists) ->
model.pt + metrics.json. The run directory is named by the config hash, so rerunning the same
command after a kill continues from checkpoints/last.ckpt at the same global step, and logs/metrics.csv
keeps the rows of the steps before it. A last.ckpt that cannot be resumed from (garbage, truncated,
holding code, another model's weights) stops the run before anything is built, saying what to do.

    python -m mmcl train --config configs/demo.yaml --set train.max_epochs=2
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from mmcl.config import RunConfig
from mmcl.data.manifest import atomic_write_text  # fsync + rename: a kill never leaves half a metrics.json


def _precision(cfg: RunConfig) -> str:
    import torch

    if cfg.train.precision != "auto":
        return cfg.train.precision
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def build_trainer(cfg: RunConfig, run_dir: Path, callbacks: list, enable_checkpointing: bool = True,
                  resume_step: int | None = None):
    """The Lightning Trainer of a run; `resume_step`: the global step of the checkpoint it resumes from."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from mmcl.train.callbacks import AtomicCheckpointIO, ContinuingCSVLogger

    tc = cfg.train
    callbacks = list(callbacks)
    if enable_checkpointing:
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
                                         every_n_train_steps=tc.checkpoint_every_n_steps, save_on_train_epoch_end=True))
    if tc.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    loggers = [ContinuingCSVLogger(run_dir, resume_step, name="logs", version=""),
               TensorBoardLogger(run_dir, name="tensorboard", version="")]
    return L.Trainer(
        default_root_dir=run_dir, max_epochs=tc.max_epochs, max_steps=tc.max_steps, accelerator=tc.accelerator,
        devices=tc.devices, strategy=tc.strategy, precision=_precision(cfg), logger=loggers, callbacks=callbacks,
        log_every_n_steps=tc.log_every_n_steps, check_val_every_n_epoch=tc.val_every_n_epochs,
        gradient_clip_val=tc.grad_clip, enable_progress_bar=tc.progress_bar, enable_checkpointing=enable_checkpointing,
        num_sanity_val_steps=0, num_nodes=tc.num_nodes, plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the resumable sampler shards by rank itself (train/datamodule.py)
    )


def train(cfg: RunConfig, *, evaluate_retrieval: bool = True, fresh: bool = False) -> dict[str, Any]:
    """Train (or resume) the run described by `cfg`; returns the metrics written to metrics.json."""
    import lightning as L
    import torch

    from mmcl.train.callbacks import ResumeProgress, Throughput
    from mmcl.train.checkpoint import MODEL_FILE, remove_stale_temporaries, save_model
    from mmcl.train.datamodule import TripleDataModule
    from mmcl.train.evaluate import chance_recall, retrieval_table
    from mmcl.train.module import ContrastiveModule

    run_dir = cfg.run_dir()
    last = run_dir / "checkpoints" / "last.ckpt"
    if fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    rank_zero = _launched_as_global_zero()  # before fit there is no trainer rank yet: read the launcher's env
    if rank_zero:  # what a kill during a checkpoint or model.pt write left; only rank zero writes those
        remove_stale_temporaries(last.parent, last.name)
        remove_stale_temporaries(run_dir, MODEL_FILE)
    checkpoint = _resume_checkpoint(run_dir, last) if last.exists() or last.is_symlink() else None
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    atomic_write_text(run_dir / "config_hash.txt", cfg.config_hash() + "\n")

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    module = ContrastiveModule(cfg.to_dict())
    resumed_from = None
    if checkpoint is not None:
        _check_weights_fit(checkpoint, module, run_dir, last)
        resumed_from = checkpoint["global_step"]
        del checkpoint  # Lightning reads it again in fit
        print(f"resuming {run_dir} from {last} (global step {resumed_from})", flush=True)
    datamodule = TripleDataModule(cfg.data, module.model, seed=cfg.seed)
    datamodule.setup("fit")  # data problems surface here, before any training step
    throughput = Throughput()
    trainer = build_trainer(cfg, run_dir, [ResumeProgress(), throughput], resume_step=resumed_from)
    before_file = run_dir / "retrieval_before.json"
    if evaluate_retrieval and rank_zero and not before_file.is_file() and len(datamodule.records["test"]) > 0:
        # The untrained model's held-out retrieval, measured once per run before the first step (a resumed
        # process reads it back), so every run reports how far training moved it, beside chance.
        emb = _embed_test(module.model, datamodule, cfg)
        atomic_write_text(before_file, json.dumps({"test_retrieval": retrieval_table(emb),
                                                   "chance_R@5": chance_recall(emb, k=5)}, indent=2, default=float))
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resumed_from is not None else None,
                weights_only=True)
    wall = time.perf_counter() - t0

    if not trainer.is_global_zero:
        return {"run_dir": str(run_dir), "global_step": int(trainer.global_step), "rank": trainer.global_rank}
    save_model(module.model, cfg.to_dict(), run_dir / MODEL_FILE)
    metrics: dict[str, Any] = {
        "run_dir": str(run_dir),
        "config_hash": cfg.config_hash(),
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "resumed_from_step": resumed_from,
        "steps_this_process": throughput.steps,
        "fit_seconds": round(wall, 2),
        "train_samples_per_second": throughput.samples_per_second(),
        "splits": datamodule.describe(),
        "teacher": datamodule.teacher_info,  # None: this objective read no teacher
        "final": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    if evaluate_retrieval and len(datamodule.records["test"]) > 0:
        metrics["test_retrieval"] = retrieval_table(_embed_test(module.model, datamodule, cfg))
        if before_file.is_file():
            before = json.loads(before_file.read_text())
            metrics["test_retrieval_before"] = before["test_retrieval"]
            metrics["test_retrieval_chance_R@5"] = before["chance_R@5"]
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float))
    return metrics


# what Lightning reads from a checkpoint when it resumes a fit
_RESUME_KEYS = ("state_dict", "global_step", "epoch", "loops", "optimizer_states", "lr_schedulers")


def _cannot_resume(run_dir: Path, last: Path, reason: str):
    from mmcl.errors import UserError

    return UserError(f"cannot resume {run_dir}: {reason}. Start this run over with the same command and --fresh "
                     f"(deletes {run_dir}), or move the file aside (`mv {last} {last}.broken`) and rerun, which also "
                     "starts from step 0")


def _resume_checkpoint(run_dir: Path, last: Path) -> dict[str, Any]:
    """The checkpoint to resume from, checked before anything is built: a readable, weights-only Lightning
    training checkpoint (the check of its weights against the model follows in _check_weights_fit)."""
    from mmcl.errors import UserError
    from mmcl.train.checkpoint import read_torch_file

    if last.is_symlink() or not last.is_file():
        raise _cannot_resume(run_dir, last, f"{last} is a symlink or not a regular file (mmcl writes a plain file)")
    try:
        checkpoint = read_torch_file(last)
    except UserError as exc:
        raise _cannot_resume(run_dir, last, str(exc)) from exc
    missing = [k for k in _RESUME_KEYS if k not in checkpoint]
    if missing:
        raise _cannot_resume(run_dir, last, f"{last} is not a Lightning training checkpoint (no {', '.join(missing)})")
    step = checkpoint["global_step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0 or not isinstance(checkpoint["state_dict"], dict):
        raise _cannot_resume(run_dir, last, f"{last} holds global_step {step!r} (expected an integer >= 0)")
    return checkpoint


def _check_weights_fit(checkpoint: dict[str, Any], module, run_dir: Path, last: Path) -> None:
    import torch

    expected, saved = module.state_dict(), checkpoint["state_dict"]
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    wrong = [k for k in expected if k in saved and (not isinstance(saved[k], torch.Tensor)
                                                    or saved[k].shape != expected[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unknown (e.g. {unexpected[0]})" if unexpected else "",
            f"{len(wrong)} of another shape (e.g. {wrong[0]})" if wrong else "") if part)
        raise _cannot_resume(run_dir, last, f"the weights in {last} are not this model's ({detail})")


def _launched_as_global_zero() -> bool:
    """torchrun sets RANK; Lightning's own DDP launcher sets LOCAL_RANK (and NODE_RANK) in the processes it starts."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def _embed_test(model, datamodule, cfg: RunConfig):
    from mmcl.train.evaluate import embed_records

    return embed_records(model, datamodule.records["test"], tuple(cfg.data.modalities),
                         image_transform=datamodule.eval_loaders.image_transform,
                         audio_sample_rate=cfg.data.audio_sample_rate, audio_seconds=cfg.data.audio_seconds,
                         progress=cfg.train.progress_bar)
