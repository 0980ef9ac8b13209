"""The resumable sampler: per-epoch permutations, resume skip, and disjoint equal shards per DDP rank."""

from __future__ import annotations

from mmcl.train.datamodule import ResumableRandomSampler


def _draw(n: int, epoch: int, rank: int, world: int, monkeypatch, skip: int = 0) -> list[int]:
    monkeypatch.setattr(ResumableRandomSampler, "_rank_world", staticmethod(lambda: (rank, world)))
    s = ResumableRandomSampler(n, seed=3)
    s.set_epoch(epoch)
    s._skip = skip
    assert len(s) == n // world - skip
    return [i - epoch * n for i in s]


def test_ranks_get_disjoint_equal_shards_of_one_permutation(monkeypatch):
    whole = _draw(11, 2, 0, 1, monkeypatch)
    assert sorted(whole) == list(range(11))
    shards = [_draw(11, 2, r, 2, monkeypatch) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5  # 11 // 2: the odd sample is dropped, not duplicated
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) <= set(whole)


def test_resume_skip_applies_within_the_rank_shard(monkeypatch):
    full = _draw(20, 1, 1, 2, monkeypatch)
    assert _draw(20, 1, 1, 2, monkeypatch, skip=4) == full[4:]
    assert _draw(20, 0, 1, 2, monkeypatch) != full  # a new permutation each epoch
