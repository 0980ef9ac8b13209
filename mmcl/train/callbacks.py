"""Training callbacks: resumable data position, throughput measurement."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from typing_extensions import override


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
