"""Lightning DataModule for the Flickr8k triples, split by image so no held-out image is trained on.

With `data.text_corpus` set, training alternates unlabeled text-only batches with the paired batches
(MCSE / KDMCSE; see mmcl.train.alternating); with `data.teacher.kind` set, every paired batch carries
batch["teacher"] = {"text": [B, Dt], "image": [B, Di]}, the frozen teacher's cached embeddings.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from mmcl.config import DataConfig
from mmcl.data.feature_cache import image_features, text_features
from mmcl.data.flickr import FlickrRecord, load_flickr_triples
from mmcl.data.triples import ModalityLoaders, TripleDataset, collate_items
from mmcl.errors import ConfigError
from mmcl.train.alternating import AlternatingLoader

CORPUS_CAP_SEED = 0  # the corpus cap keeps the same sentences for every run seed, so seeds compare like data

VAL_SPLIT = "dev"


class ResumableRandomSampler(Sampler[int]):
    """A seeded permutation per epoch that can skip the samples a killed run already trained on.

    Under torch.distributed each rank takes every world-th index of the same permutation (equal
    lengths, the remainder dropped), so the ranks see disjoint samples: duplicates across ranks would
    be false negatives in the gathered contrastive batch. Lightning's own DistributedSampler is not
    used (use_distributed_sampler=False) because it would drop this sampler's resume skip.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self._skip = n, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _shard(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        rank, world = self._rank_world()
        per_rank = self.n // world
        return perm[rank::world][:per_rank]

    def __iter__(self):
        shard = self._shard()
        skip, self._skip = self._skip, 0
        # the epoch travels inside the index, so per-epoch draws are right in worker processes too
        return iter(self.epoch * self.n + i for i in shard[skip:])

    def __len__(self) -> int:
        return self.n // self._rank_world()[1] - self._skip


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


def collate_paired(items: list[dict[str, Any]], base, teacher: dict | None) -> dict[str, Any]:
    """collate_items plus the batch kind and, with a teacher, its rows for the drawn captions and images."""
    batch = base(items)
    batch["kind"] = "paired"
    if teacher:
        batch["teacher"] = {"image": teacher["image"](batch["ids"])}  # [B, Di]
        if "text_id" in items[0]:
            batch["teacher"]["text"] = teacher["text"]([it["text_id"] for it in items])  # [B, Dt]
    return batch


def collate_text_only(items: list[dict[str, Any]], modalities: tuple[str, ...], tokenize,
                      teacher: dict | None) -> dict[str, Any]:
    """Text-only batch: text inputs only; every other modality is marked absent for the objective."""
    n = len(items)
    batch = {
        "inputs": {"text": tokenize([it["text"] for it in items])},
        "present": {m: torch.full((n,), m == "text", dtype=torch.bool) for m in modalities},
        "sample_index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "ids": [it["id"] for it in items],
        "kind": "text",
    }
    if teacher and teacher.get("corpus"):
        batch["teacher"] = {"text": teacher["text"](batch["ids"])}  # [B, Dt] (kdmcse filter_text)
    return batch


def split_records(records: list[FlickrRecord], eval_splits: tuple[str, ...]):
    """(train, val, test): val = dev images, test = eval_splits; neither is trained on."""
    held = set(eval_splits) | {VAL_SPLIT}
    train = [r for r in records if r.split not in held]
    val = [r for r in records if r.split == VAL_SPLIT and r.split not in eval_splits]
    test = [r for r in records if r.split in eval_splits]
    return train, val, test


def select_records(cfg: DataConfig) -> dict[str, list[FlickrRecord]]:
    """{"train", "val", "test"} records a run on `cfg` uses (splits, then the quick-run caps)."""
    train, val, test = split_records(load_flickr_triples(cfg.data_dir), tuple(cfg.eval_splits))
    if cfg.max_train_images:
        train = train[: cfg.max_train_images]
    if cfg.max_eval_images:
        val, test = val[: cfg.max_eval_images], test[: cfg.max_eval_images]
    return {"train": train, "val": val, "test": test}


def capped_corpus(cfg: DataConfig, held_out: set[str]) -> list[str]:
    """The unlabeled text corpus without the captions of held-out images, capped with a fixed seed."""
    from mmcl.data.text_corpus import load_text_corpus

    sentences = load_text_corpus(cfg.text_corpus, cfg.data_dir, exclude_images=held_out)
    if cfg.max_corpus_sentences and len(sentences) > cfg.max_corpus_sentences:
        g = torch.Generator().manual_seed(CORPUS_CAP_SEED)
        keep = torch.randperm(len(sentences), generator=g)[: cfg.max_corpus_sentences].sort().values
        sentences = [sentences[i] for i in keep.tolist()]
    return sentences


class TripleDataModule(L.LightningDataModule):
    def __init__(self, cfg: DataConfig, model, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.modalities = tuple(cfg.modalities)
        self.audio_samples = int(cfg.audio_seconds * cfg.audio_sample_rate)
        self.tokenize = model.encoders["text"].tokenize if "text" in self.modalities else None
        image_enc = model.encoders["image"] if "image" in self.modalities else None
        self.model, self.frozen = model, set(model.frozen) & set(self.modalities)
        self.train_loaders = ModalityLoaders(
            image_transform=image_enc.transform(train=True) if image_enc else None,
            audio_sample_rate=cfg.audio_sample_rate, audio_samples=self.audio_samples,
        )
        self.eval_loaders = ModalityLoaders(
            image_transform=image_enc.transform(train=False) if image_enc else None,
            audio_sample_rate=cfg.audio_sample_rate, audio_samples=self.audio_samples,
        )
        self.train_set = self.val_set = self.test_set = None
        self.corpus_set, self.teacher = None, None  # set in setup when configured
        self.teacher_info: dict[str, Any] | None = None  # what the teacher was and which cache files it read

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.cfg.dataset != "flickr8k_triples":
            raise ConfigError(f"data.dataset: unknown dataset {self.cfg.dataset!r} (known: flickr8k_triples)")
        self.records = select_records(self.cfg)
        train, val, test = self.records["train"], self.records["val"], self.records["test"]
        self.train_set = TripleDataset(train, self.modalities, self.train_loaders, "random", self.seed,
                                       self.cfg.missing_modality_rate)
        self.val_set = TripleDataset(val, self.modalities, self.eval_loaders, "first", self.seed)
        self.test_set = TripleDataset(test, self.modalities, self.eval_loaders, "first", self.seed)
        if self.cfg.cache_frozen_features:
            self._attach_frozen_features(train + val + test)
        self.corpus_set = self._text_corpus(held_out={r.image_id for r in val + test}) if self.cfg.text_corpus else None
        self.teacher = self._teacher(train + val + test)

    def _text_corpus(self, held_out: set[str]):
        """The unlabeled corpus without the captions of held-out images (capped with a fixed seed)."""
        from mmcl.data.text_corpus import TextCorpusDataset

        sentences = capped_corpus(self.cfg, held_out)
        self.records["corpus"] = sentences
        return TextCorpusDataset(sentences)

    def _teacher(self, records: list[FlickrRecord]) -> dict[str, Any] | None:
        """Teacher lookup tables (embedded once per dataset version, then read from the disk cache)."""
        if self.cfg.teacher.kind == "none":
            return None
        from mmcl.train.teachers import build_teacher_tables, describe_teacher

        corpus = self.corpus_set.sentences if self.corpus_set is not None else ()
        tables: dict[str, Any] = build_teacher_tables(self.cfg.teacher, records, corpus)
        self.teacher_info = describe_teacher(self.cfg.teacher, tables)
        tables["corpus"] = self.cfg.teacher.corpus and self.corpus_set is not None
        return tables

    def _attach_frozen_features(self, records: list[FlickrRecord]) -> None:
        """Frozen towers give the same output every epoch: compute once (disk-cached) and feed features."""
        feats = {}
        if "image" in self.frozen:
            items = {r.image_id: r.image_path for r in records}
            feats["image"] = image_features(self.model.encoders["image"], items, self.eval_loaders.image_transform)
        if "text" in self.frozen:
            texts = {f"{r.image_id}#{k}": c for r in records for k, c in enumerate(r.captions)}
            feats["text"] = text_features(self.model.encoders["text"], texts)
        for ds in (self.train_set, self.val_set, self.test_set):
            ds.features.update(feats)

    def _collate(self):
        base = partial(collate_items, modalities=self.modalities, tokenize=self.tokenize, audio_samples=self.audio_samples)
        if self.teacher is None and self.corpus_set is None:
            return base  # plain paired training: batches exactly as before
        return partial(collate_paired, base=base, teacher=self.teacher)

    def _resumable(self, dataset, collate, seed: int) -> ResumableLoader:
        sampler = ResumableRandomSampler(len(dataset), seed)
        # drop_last: a ragged last batch of 1 gives a meaningless contrastive loss
        return ResumableLoader(dataset, batch_size=self.cfg.batch_size, sampler=sampler, drop_last=True,
                               num_workers=self.cfg.num_workers, collate_fn=collate)

    def train_dataloader(self) -> DataLoader | AlternatingLoader:
        paired = self._resumable(self.train_set, self._collate(), self.seed)
        if self.corpus_set is None:
            return paired
        text_collate = partial(collate_text_only, modalities=self.modalities, tokenize=self.tokenize,
                               teacher=self.teacher)
        # a different sampler seed for the corpus: its permutation should not mirror the paired one's
        text = self._resumable(self.corpus_set, text_collate, self.seed + 1)
        return AlternatingLoader(text, paired, self.cfg.text_batches_per_paired)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.cfg.batch_size, shuffle=False,
                          num_workers=self.cfg.num_workers, collate_fn=self._collate())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.cfg.batch_size, shuffle=False,
                          num_workers=self.cfg.num_workers, collate_fn=self._collate())

    def describe(self) -> dict[str, Any]:
        return {k: len(v) for k, v in self.records.items()}  # train/val/test images (+ corpus sentences)
