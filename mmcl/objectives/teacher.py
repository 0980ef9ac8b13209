"""Frozen-teacher embeddings for KDMCSE, computed once per dataset version and cached as .npy.

The cache key is the teacher's name plus a dataset fingerprint: sha256 over the sorted (id, content)
pairs, content being the text (captions) or the media path (images). Rows are stored in that sorted
order, so any ordering of the same items hits the same file; a changed text, id or path misses.

    encode = sentence_encoder("all-minilm-l6-v2")              # texts -> [N, 384], unit norm
    emb = cached_teacher_embeddings(ids, captions, encode, name="minilm-text")
    table = TeacherTable(ids, emb); batch["teacher"] = {"text": table(batch["ids"])}

Teachers: a packaged sentence-transformers model (offline), an open_clip model from a checkpoint
(`open_clip_encoders`), or any callable mapping a list of strings (texts or image paths) to an array.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmcl.errors import DataError

EncodeFn = Callable[[list[str]], "np.ndarray | torch.Tensor"]


def dataset_fingerprint(ids: Sequence[str], contents: Sequence[str]) -> str:
    """sha256 hex digest of the sorted (id, content) pairs (order-independent)."""
    if len(ids) != len(contents):
        raise ValueError(f"dataset_fingerprint: {len(ids)} ids but {len(contents)} contents")
    h = hashlib.sha256()
    for item_id, content in sorted(zip(ids, contents, strict=True)):
        # separators keep ("a", "bc") apart from ("ab", "c")
        h.update(f"{item_id}\x1f{content}\x1e".encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """<MMCL_CACHE_DIR or ./.mmcl_cache>/teacher, beside the frozen-feature cache."""
    return Path(os.environ.get("MMCL_CACHE_DIR", Path.cwd() / ".mmcl_cache")) / "teacher"


def teacher_cache_file(name: str, ids: Sequence[str], contents: Sequence[str],
                       cache_dir: str | Path | None = None) -> Path:
    """The one cache key of teacher embeddings: `<cache_dir>/<name>-<fingerprint[:20]>.npy`. Whoever prepares a
    teacher cache (the Dagster asset) and whoever reads it (training) call this, so they name the same file."""
    return Path(cache_dir or default_cache_dir()) / f"{name}-{dataset_fingerprint(ids, contents)[:20]}.npy"


def _encode_all(contents: list[str], encode: EncodeFn, batch_size: int, progress: bool) -> np.ndarray:
    chunks = []
    for start in tqdm(range(0, len(contents), batch_size), desc="teacher embeddings", disable=not progress):
        out = encode(contents[start : start + batch_size])
        chunks.append(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out))
    arr = np.concatenate(chunks).astype(np.float32)  # [N, Dt]
    return arr / np.clip(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12, None)  # teachers give cosines


def cached_teacher_embeddings(
    ids: Sequence[str],
    contents: Sequence[str],
    encode: EncodeFn,
    name: str,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """Unit-norm teacher embeddings [N, Dt] in the order of `ids`, from `<cache_dir>/<name>-<fp>.npy`.

    Args:
        ids, contents: item ids and what the teacher encodes (texts, or media paths for images).
        encode: list[str] -> [n, Dt] array or tensor (the frozen teacher).
        name: the teacher's identity (model + modality); part of the cache key.
    """
    order = sorted(range(len(ids)), key=lambda i: (ids[i], contents[i]))
    path = teacher_cache_file(name, ids, contents, cache_dir)
    if path.is_file():
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2 or arr.shape[0] != len(ids):
            raise DataError(
                path, f"teacher cache holds shape {arr.shape}, expected {len(ids)} rows; delete it to rebuild"
            )
    else:
        arr = _encode_all([contents[i] for i in order], encode, batch_size, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, arr)
        os.replace(tmp, path)  # atomic: a crashed run leaves no half-written cache
    out = np.empty_like(arr)
    out[order] = arr  # sorted rows back to the caller's order
    return out


class TeacherTable:
    """id -> teacher row lookup for collate: `table(batch_ids)` gives Float[B, Dt]."""

    def __init__(self, ids: Sequence[str], embeddings: np.ndarray | torch.Tensor, file: Path | None = None) -> None:
        self.rows = {item_id: i for i, item_id in enumerate(ids)}
        self.embeddings = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)  # [N, Dt]
        self.file = file  # the cache file the rows came from (lineage records it)

    def __call__(self, ids: Sequence[str]) -> torch.Tensor:
        missing = [i for i in ids if i not in self.rows]
        if missing:
            raise KeyError(f"no teacher embedding for ids {missing[:5]} ({len(missing)} missing)")
        return self.embeddings[[self.rows[i] for i in ids]]


def sentence_encoder(
    name_or_path: str | Path = "all-minilm-l6-v2", device: str = "cpu", batch_size: int = 64
) -> EncodeFn:
    """A frozen sentence-transformers text teacher: list[str] -> [n, Dt] unit-norm array."""
    from sentence_transformers import SentenceTransformer

    from mmcl.encoders.hub import resolve_text_model  # packaged short names resolve offline

    model = SentenceTransformer(str(resolve_text_model(name_or_path)), device=device)
    model.eval()

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )

    return encode


def open_clip_encoders(
    model_name: str, checkpoint: str | Path, device: str = "cpu"
) -> tuple[EncodeFn, EncodeFn]:
    """(text teacher, image teacher) from an open_clip architecture and a local checkpoint file.

    The image teacher takes image paths. Weights load with weights_only=True (open_clip's default).
    """
    import open_clip

    from mmcl.data.flickr import load_image

    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(checkpoint), device=device
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)

    @torch.inference_mode()
    def encode_text(texts: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(texts).to(device), normalize=True).float()

    @torch.inference_mode()
    def encode_image(paths: list[str]) -> torch.Tensor:
        pixels = torch.stack([preprocess(load_image(p)) for p in paths]).to(device)  # [n, 3, H, W]
        return model.encode_image(pixels, normalize=True).float()

    return encode_text, encode_image
