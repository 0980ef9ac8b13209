"""Text-only and paired batches in one training stream (MCSE / KDMCSE), resumable mid-epoch.

    loader = AlternatingLoader(text_loader, paired_loader, text_per_paired=1)
    for batch in loader: ...     # text, paired, text, paired, ...   (batch["kind"] says which)

Why not Lightning's CombinedLoader: its modes (max_size_cycle, min_size, max_size, sequential) either
hand every loader's batch to the same step or run the loaders one after the other; MCSE/KDMCSE need
one kind per optimiser step, interleaved, so that the text-only loss (L_text) and the grounded loss
(L_text + λ·cross-modal terms) alternate as in the papers' training loops.

An epoch is one pass over the text corpus: `text_per_paired` text batches, then one paired batch, and so
on; the (smaller) paired set is cycled with a fresh permutation per pass. Both inner loaders must use
samplers with `set_epoch` and `_skip` (mmcl.train.datamodule.ResumableRandomSampler), so a checkpoint
taken after batch k of an epoch resumes at batch k+1 with the same draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

# pass c over the paired set within epoch e draws permutation epoch*stride + c: distinct for every (e, c)
PAIRED_CYCLE_STRIDE = 10007


class _EpochHook:
    """What Lightning's _set_sampler_epoch finds at `loader.sampler`: forwards set_epoch to the loader."""

    def __init__(self, owner: AlternatingLoader) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.epoch = epoch


class AlternatingLoader:
    """`text_per_paired` text-only batches, then one paired batch, repeated over one pass of the text corpus."""

    def __init__(self, text: DataLoader, paired: DataLoader, text_per_paired: int = 1) -> None:
        if text_per_paired < 1:
            raise ValueError("text_per_paired must be at least 1")
        self.text, self.paired, self.k = text, paired, int(text_per_paired)
        if self.n_text < 1 or self.n_paired < 1:
            raise ValueError(
                f"alternating batches need at least one full batch of each kind "
                f"(text corpus {len(text.dataset)}, paired {len(paired.dataset)} items)"
            )
        self.sampler = _EpochHook(self)
        self.epoch, self.batches_done, self._skip = 0, 0, 0

    @staticmethod
    def _full_batches(loader: DataLoader) -> int:
        """drop_last batches in one pass of `loader` on this rank (the sampler shards by rank under DDP)."""
        sampler = loader.sampler
        return (len(sampler) + getattr(sampler, "_skip", 0)) // loader.batch_size

    @property
    def n_text(self) -> int:
        return self._full_batches(self.text)

    @property
    def n_paired(self) -> int:
        return self._full_batches(self.paired)

    def __len__(self) -> int:
        return self.n_text + self.n_text // self.k

    def is_paired(self, position: int) -> bool:
        """Position p of the epoch is a paired batch iff it closes a group of k text batches."""
        return position % (self.k + 1) == self.k

    def _count_paired(self, positions: int) -> int:
        return positions // (self.k + 1)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        skip, self._skip = self._skip, 0
        paired_done = self._count_paired(skip)
        text_done = skip - paired_done
        self.text.sampler.set_epoch(self.epoch)
        self.text.sampler._skip = text_done * self.text.batch_size
        text_it = iter(self.text)
        cycle, within = divmod(paired_done, self.n_paired)
        paired_it = self._paired_pass(cycle, within)
        for position in range(skip, len(self)):
            if self.is_paired(position):
                batch = next(paired_it, None)
                if batch is None:  # paired set exhausted: next pass, new permutation
                    cycle += 1
                    paired_it = self._paired_pass(cycle, 0)
                    batch = next(paired_it)
            else:
                batch = next(text_it)
            yield batch

    def _paired_pass(self, cycle: int, skip_batches: int) -> Iterator[dict[str, Any]]:
        self.paired.sampler.set_epoch(self.epoch * PAIRED_CYCLE_STRIDE + cycle)
        self.paired.sampler._skip = skip_batches * self.paired.batch_size
        return iter(self.paired)

    # Lightning treats objects with state_dict/load_state_dict as stateful loaders and checkpoints them
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.batches_done = self._skip = int(state["batches_done"])
