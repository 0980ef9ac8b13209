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


def _fingerprint(encoder: torch.nn.Module, paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().sum().item().hex().encode())  # cheap weight summary
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


@torch.inference_mode()
def image_features(
    encoder: torch.nn.Module, items: dict[str, Path], transform, batch_size: int = 64, progress: bool = True
) -> dict[str, torch.Tensor]:
    """{item id: features [H]} for every image, from the disk cache when the fingerprint matches."""
    ids = sorted(items)
    paths = [items[i] for i in ids]
    key = _fingerprint(encoder, paths, f"{type(encoder).__name__}:{transform}")
    file = cache_root() / "features" / f"image-{key}.pt"
    if file.is_file():
        blob = torch.load(file, map_location="cpu", weights_only=True)
        if blob.get("ids") == ids:
            return dict(zip(ids, blob["features"]))
    was_training = encoder.training
    encoder.eval()
    chunks = []
    for start in tqdm(range(0, len(ids), batch_size), desc="frozen image features", disable=not progress):
        batch = torch.stack([transform(load_image(p)) for p in paths[start : start + batch_size]])  # [b, 3, H, W]
        chunks.append(encoder(batch).float())
    encoder.train(was_training)
    feats = torch.cat(chunks) if chunks else torch.zeros(0)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    torch.save({"ids": ids, "features": feats}, tmp)
    os.replace(tmp, file)
    return dict(zip(ids, feats))
