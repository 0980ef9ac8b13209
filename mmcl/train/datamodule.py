"""Lightning DataModule for the Flickr8k triples, split by image so no held-out image is trained on."""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from mmcl.config import DataConfig
from mmcl.data.feature_cache import image_features
from mmcl.data.flickr import FlickrRecord, load_flickr_triples
from mmcl.data.triples import ModalityLoaders, TripleDataset, collate_items
from mmcl.errors import ConfigError

VAL_SPLIT = "dev"


class ResumableRandomSampler(Sampler[int]):
    """A seeded permutation per epoch that can skip the samples a killed run already trained on."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self._skip = n, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        skip, self._skip = self._skip, 0
        # the epoch travels inside the index, so per-epoch draws are right in worker processes too
        return iter(self.epoch * self.n + i for i in perm[skip:])

    def __len__(self) -> int:
        return self.n - self._skip


class ResumableLoader(DataLoader):
    """A DataLoader Lightning treats as stateful: its state is (epoch, batches done in that epoch).

    `batches_done` is set by ResumeProgress (a callback) after each training batch, so a checkpoint
    written at step k resumes at batch k+1 of the same epoch instead of replaying the epoch.
    """

    batches_done = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self.sampler._skip = state["batches_done"] * self.batch_size
        self.batches_done = state["batches_done"]


def split_records(records: list[FlickrRecord], eval_splits: tuple[str, ...]):
    """(train, val, test): val = dev images, test = eval_splits; neither is trained on."""
    held = set(eval_splits) | {VAL_SPLIT}
    train = [r for r in records if r.split not in held]
    val = [r for r in records if r.split == VAL_SPLIT and r.split not in eval_splits]
    test = [r for r in records if r.split in eval_splits]
    return train, val, test


class TripleDataModule(L.LightningDataModule):
    def __init__(self, cfg: DataConfig, model, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.modalities = tuple(cfg.modalities)
        self.audio_samples = int(cfg.audio_seconds * cfg.audio_sample_rate)
        self.tokenize = model.encoders["text"].tokenize if "text" in self.modalities else None
        image_enc = model.encoders["image"] if "image" in self.modalities else None
        self.frozen_image_encoder = image_enc if image_enc is not None and "image" in model.frozen else None
        self.train_loaders = ModalityLoaders(
            image_transform=image_enc.transform(train=True) if image_enc else None,
            audio_sample_rate=cfg.audio_sample_rate, audio_samples=self.audio_samples,
        )
        self.eval_loaders = ModalityLoaders(
            image_transform=image_enc.transform(train=False) if image_enc else None,
            audio_sample_rate=cfg.audio_sample_rate, audio_samples=self.audio_samples,
        )
        self.train_set = self.val_set = self.test_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.cfg.dataset != "flickr8k_triples":
            raise ConfigError(f"data.dataset: unknown dataset {self.cfg.dataset!r} (known: flickr8k_triples)")
        train, val, test = split_records(load_flickr_triples(self.cfg.data_dir), tuple(self.cfg.eval_splits))
        if self.cfg.max_train_images:
            train = train[: self.cfg.max_train_images]
        if self.cfg.max_eval_images:
            val, test = val[: self.cfg.max_eval_images], test[: self.cfg.max_eval_images]
        self.records = {"train": train, "val": val, "test": test}
        self.train_set = TripleDataset(train, self.modalities, self.train_loaders, "random", self.seed,
                                       self.cfg.missing_modality_rate)
        self.val_set = TripleDataset(val, self.modalities, self.eval_loaders, "first", self.seed)
        self.test_set = TripleDataset(test, self.modalities, self.eval_loaders, "first", self.seed)
        if self.frozen_image_encoder is not None and self.cfg.cache_frozen_features:
            items = {r.image_id: r.image_path for r in train + val + test}
            feats = image_features(self.frozen_image_encoder, items, self.eval_loaders.image_transform)
            for ds in (self.train_set, self.val_set, self.test_set):
                ds.features["image"] = feats

    def _collate(self):
        return partial(collate_items, modalities=self.modalities, tokenize=self.tokenize, audio_samples=self.audio_samples)

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableRandomSampler(len(self.train_set), self.seed)
        # drop_last: a ragged last batch of 1 gives a meaningless contrastive loss
        return ResumableLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=sampler, drop_last=True,
                               num_workers=self.cfg.num_workers, collate_fn=self._collate(),
                               )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.cfg.batch_size, shuffle=False,
                          num_workers=self.cfg.num_workers, collate_fn=self._collate())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.cfg.batch_size, shuffle=False,
                          num_workers=self.cfg.num_workers, collate_fn=self._collate())

    def describe(self) -> dict[str, Any]:
        return {k: len(v) for k, v in self.records.items()}
