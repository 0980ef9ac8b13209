"""Torch datasets over Flickr8k triples: one item per image (a caption drawn per epoch), or, for
evaluation, every caption as its own query with the image id as the positive key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmcl.data.audio import load_audio
from mmcl.data.flickr import FlickrRecord, load_image


def _stable_int(*parts: Any) -> int:
    """A process-independent hash (Python's hash() is salted per process; resume needs the same draw)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


@dataclass
class ModalityLoaders:
    """How raw items become tensors for each modality (set from the model's encoders)."""

    image_transform: Any = None
    audio_sample_rate: int = 16000
    audio_samples: int = 96000


class TripleDataset(Dataset):
    """Items: {"index", "id", "text", "image", "audio", "present"} for one image each.

    `caption_mode`: "random" draws one of the image's captions per epoch (seeded, so a resumed run
    sees the same draw), "first" always the first caption.
    """

    def __init__(
        self,
        records: list[FlickrRecord],
        modalities: tuple[str, ...],
        loaders: ModalityLoaders,
        caption_mode: str = "random",
        seed: int = 0,
        missing_modality_rate: float = 0.0,
    ) -> None:
        self.records, self.modalities, self.loaders = records, modalities, loaders
        self.caption_mode, self.seed = caption_mode, seed
        self.missing_modality_rate = missing_modality_rate
        self.features: dict[str, dict[str, torch.Tensor]] = {}  # frozen towers: {modality: {id: [H]}}
        self._audio_cache: dict[int, np.ndarray] = {}  # decoding MP3 costs more than a training step's share

    def __len__(self) -> int:
        return len(self.records)

    def _audio(self, i: int) -> np.ndarray | None:
        rec = self.records[i]
        if rec.audio_path is None:
            return None
        if i not in self._audio_cache:
            seconds = self.loaders.audio_samples / self.loaders.audio_sample_rate
            self._audio_cache[i] = load_audio(rec.audio_path, self.loaders.audio_sample_rate, max_seconds=seconds)
        return self._audio_cache[i]

    def __getitem__(self, key: int) -> dict[str, Any]:
        # training samplers encode the epoch in the key (epoch * len + index); evaluation passes the index
        epoch, i = divmod(key, len(self.records))
        rec = self.records[i]
        item: dict[str, Any] = {"index": i, "id": rec.image_id, "present": {}}
        draw = _stable_int(self.seed, epoch, i)
        present = {m: True for m in self.modalities}
        if self.missing_modality_rate > 0 and len(self.modalities) > 1:
            rng = np.random.default_rng(draw)
            drop = rng.random(len(self.modalities)) < self.missing_modality_rate
            if drop.all():  # a sample needs at least one modality
                drop[rng.integers(len(drop))] = False
            present = {m: not d for m, d in zip(self.modalities, drop)}
        if "text" in self.modalities:
            k = draw % len(rec.captions) if self.caption_mode == "random" else 0
            item["text_id"] = f"{rec.image_id}#{k}"  # which caption: the key of its teacher embedding (KDMCSE)
            item["text"] = self.features["text"][f"{rec.image_id}#{k}"] if "text" in self.features else rec.captions[k]
        if "image" in self.modalities:
            if "image" in self.features:
                item["image"] = self.features["image"][rec.image_id]
            else:
                item["image"] = self.loaders.image_transform(load_image(rec.image_path))
        if "audio" in self.modalities:
            wave = self._audio(i)
            present["audio"] = present["audio"] and wave is not None
            item["audio"] = wave
        item["present"] = present
        return item


def collate_items(items: list[dict[str, Any]], modalities: tuple[str, ...], tokenize, audio_samples: int) -> dict:
    """Stack items into the batch contract of mmcl.objectives.base (inputs / present / sample_index)."""
    present = {m: torch.tensor([it["present"][m] for it in items], dtype=torch.bool) for m in modalities}
    inputs: dict[str, Any] = {}
    if "text" in modalities:
        if isinstance(items[0]["text"], torch.Tensor):  # cached features of a frozen text tower
            feats = torch.stack([it["text"] for it in items])  # [B, H]
            feats[~present["text"]] = 0.0
            inputs["text"] = {"features": feats}
        else:
            inputs["text"] = tokenize([it["text"] if it["present"]["text"] else "" for it in items])
    if "image" in modalities:
        imgs = torch.stack([it["image"] for it in items])  # [B, 3, H, W], or [B, H] cached features
        imgs[~present["image"]] = 0.0
        inputs["image"] = {"features": imgs} if imgs.dim() == 2 else imgs
    if "audio" in modalities:
        wave = torch.zeros(len(items), audio_samples)  # [B, S], zero-padded
        for row, it in enumerate(items):
            if it["present"]["audio"] and it["audio"] is not None:
                clip = torch.from_numpy(it["audio"][:audio_samples])
                wave[row, : clip.shape[0]] = clip
        inputs["audio"] = wave
    return {
        "inputs": inputs,
        "present": present,
        "sample_index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "ids": [it["id"] for it in items],
    }
