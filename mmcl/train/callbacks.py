"""Training callbacks and Lightning plug-ins: resumable data position, throughput measurement, atomic
checkpoint files, and a metrics.csv that a resumed run continues."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins import TorchCheckpointIO
from typing_extensions import override

from mmcl.data.manifest import atomic_write_text
from mmcl.train.checkpoint import atomic_torch_save, read_torch_file


class ResumeProgress(L.Callback):
    """Tells the stateful train loader how many batches of this epoch are done, before any
    checkpoint of this step is written (Lightning runs checkpoint callbacks last)."""

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        loader = trainer.train_dataloader
        if hasattr(loader, "batches_done"):
            loader.batches_done = batch_idx + 1

    @override
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        loader = trainer.train_dataloader
        if hasattr(loader, "batches_done"):
            loader.batches_done = 0


class Throughput(L.Callback):
    """Samples per second over training steps, skipping the first `warmup` steps (allocations, caches)."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup, self.samples, self.seconds, self._t0, self._seen = warmup, 0, 0.0, None, 0
        self.steps = 0  # training batches run by this process (a resumed run counts only its own)

    @override
    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._seen += 1
        self.steps += 1
        if self._t0 is not None and self._seen > self.warmup:
            self.seconds += time.perf_counter() - self._t0
            self.samples += len(batch["ids"])

    def samples_per_second(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their target, fsynced and renamed (Lightning's own writer stages them in
    /tmp and moves them, which is a copy across file systems: a kill mid-copy leaves half a last.ckpt), and
    read weights-only with a message that says what is wrong with a bad file.

    Fault points (mmcl.faults): "checkpoint.before_replace" and "checkpoint.before_replace@<global step>",
    between the complete temp file and the rename."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        step = checkpoint.get("global_step")
        atomic_torch_save(checkpoint, Path(path),
                          fault_points=("checkpoint.before_replace", f"checkpoint.before_replace@{step}"))

    @override
    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_torch_file(Path(path))


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv when it starts; this one continues it: the rows
    of steps before `resume_step` (the checkpoint's global step) are kept, the rows of steps the killed process
    ran past its last checkpoint are dropped (the resumed run logs those steps again)."""

    def __init__(self, log_dir: str, resume_step: int | None) -> None:
        self._resume_step = resume_step
        super().__init__(log_dir=log_dir)

    @override
    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self._resume_step is None:  # a fresh run in this folder: nothing to continue
            path.unlink()
            return
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header, rows = list(reader.fieldnames or []), list(reader)
        kept = [row for row in rows if _step(row) is not None and _step(row) < self._resume_step]
        self.metrics_keys = header  # later rows append under the same header (a new key rewrites it, keeping rows)
        if len(kept) != len(rows):
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
            atomic_write_text(path, out.getvalue())


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(row.get("step") or "")
    except ValueError:
        return None


class ContinuingCSVLogger(CSVLogger):
    """logs/metrics.csv across kills and resumes: continued, not rewritten (see _ContinuingWriter), and
    flushed at every logged step so a kill loses no row that a checkpoint covers."""

    def __init__(self, save_dir: Path, resume_step: int | None, **kwargs: Any) -> None:
        super().__init__(save_dir, flush_logs_every_n_steps=1, **kwargs)
        self._resume_step = resume_step

    @property
    @override
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._resume_step)
        return self._experiment
