"""AlternatingLoader: the k-text-then-paired schedule, paired cycling, and mid-epoch resume."""

from __future__ import annotations

from torch.utils.data import Dataset

from mmcl.train.alternating import AlternatingLoader
from mmcl.train.datamodule import ResumableLoader, ResumableRandomSampler


class Items(Dataset):
    def __init__(self, kind: str, n: int) -> None:
        self.kind, self.n = kind, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int):
        return (self.kind, key)  # the key carries the epoch, as the real datasets receive it


def _loader(k: int = 2, seed: int = 0) -> AlternatingLoader:
    def make(kind, n, s):
        return ResumableLoader(
            Items(kind, n),
            batch_size=2,
            sampler=ResumableRandomSampler(n, s),
            drop_last=True,
            collate_fn=list,
        )

    return AlternatingLoader(make("text", 12, seed + 1), make("paired", 4, seed), text_per_paired=k)


def test_schedule_and_paired_cycling():
    loader = _loader(k=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 6 + 3
    kinds = [b[0][0] for b in batches]
    assert kinds == ["text", "text", "paired"] * 3
    paired = [key % 4 for b in batches if b[0][0] == "paired" for _, key in b]
    assert sorted(paired[:4]) == [0, 1, 2, 3]  # a full pass over the paired set before it repeats
    texts = sorted(key % 12 for b in batches if b[0][0] == "text" for _, key in b)
    assert texts == list(range(12))  # one epoch = one pass over the corpus


def test_resume_mid_epoch_gives_the_same_remaining_batches():
    full = _loader()
    full.sampler.set_epoch(3)  # Lightning sets the epoch through loader.sampler
    expected = list(full)
    for done in (1, 2, 4, 7):
        resumed = _loader()
        resumed.load_state_dict({"epoch": 3, "batches_done": done})
        assert list(resumed) == expected[done:]
    fresh = _loader()
    fresh.sampler.set_epoch(4)
    assert list(fresh) != expected  # a new epoch draws new permutations
