"""Features of frozen encoders, computed once per item and cached on disk.

A frozen tower (e.g. ImageNet EfficientNet-Lite0 with only its head trained, as in locked-image
tuning) gives the same output for an item every epoch, so recomputing it each step only burns CPU.
The cache key covers the encoder's weights and the item files, so a changed file or encoder misses.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmcl.data.flickr import load_image

CACHE_ENV = "MMCL_CACHE_DIR"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.cwd() / ".mmcl_cache"))


def _fingerprint(encoder: torch.nn.Module, items: list[str], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().sum().item().hex().encode())  # cheap weight summary
    for item in items:
        h.update(item.encode())
    return h.hexdigest()[:16]


def _file_key(p: Path) -> str:
    st = p.stat()
    return f"{p.name}:{st.st_size}:{int(st.st_mtime)}"


def _cached(kind: str, key: str, ids: list[str], compute) -> dict[str, torch.Tensor]:
    file = cache_root() / "features" / f"{kind}-{key}.pt"
    if file.is_file():
        blob = torch.load(file, map_location="cpu", weights_only=True)
        if blob.get("ids") == ids:
            return dict(zip(ids, blob["features"]))
    feats = compute()
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    torch.save({"ids": ids, "features": feats}, tmp)
    os.replace(tmp, file)
    return dict(zip(ids, feats))


@torch.inference_mode()
def text_features(
    encoder: torch.nn.Module, texts: dict[str, str], batch_size: int = 128, progress: bool = True
) -> dict[str, torch.Tensor]:
    """{item id: features [H]} for every text of a frozen text tower (length-sorted batches)."""
    ids = sorted(texts)
    key = _fingerprint(encoder, [f"{i}\t{texts[i]}" for i in ids], f"{type(encoder).__name__}:{getattr(encoder, 'pooling', '')}")

    def compute() -> torch.Tensor:
        was_training = encoder.training
        encoder.eval()
        order = sorted(range(len(ids)), key=lambda j: len(texts[ids[j]]))  # less padding per batch
        out = torch.zeros(len(ids), encoder.output_dim)
        for start in tqdm(range(0, len(order), batch_size), desc="frozen text features", disable=not progress):
            rows = order[start : start + batch_size]
            out[rows] = encoder(encoder.tokenize([texts[ids[j]] for j in rows])).float()
        encoder.train(was_training)
        return out

    return _cached("text", key, ids, compute)


@torch.inference_mode()
def image_features(
    encoder: torch.nn.Module, items: dict[str, Path], transform, batch_size: int = 64, progress: bool = True
) -> dict[str, torch.Tensor]:
    """{item id: features [H]} for every image, from the disk cache when the fingerprint matches."""
    ids = sorted(items)
    paths = [items[i] for i in ids]
    key = _fingerprint(encoder, [_file_key(p) for p in paths], f"{type(encoder).__name__}:{transform}")

    def compute() -> torch.Tensor:
        was_training = encoder.training
        encoder.eval()
        chunks = []
        for start in tqdm(range(0, len(ids), batch_size), desc="frozen image features", disable=not progress):
            batch = torch.stack([transform(load_image(p)) for p in paths[start : start + batch_size]])  # [b, 3, H, W]
            chunks.append(encoder(batch).float())
        encoder.train(was_training)
        return torch.cat(chunks) if chunks else torch.zeros(0, encoder.output_dim)

    return _cached("image", key, ids, compute)
