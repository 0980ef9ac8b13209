"""Held-out cross-modal retrieval for a trained model: every caption is a query, images and speech
clips are galleries; positives share the image id (5 captions per image)."""

from __future__ import annotations

from itertools import permutations
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mmcl.data.audio import load_audio
from mmcl.data.flickr import FlickrRecord, load_image


@torch.inference_mode()
def embed_records(
    model, records: list[FlickrRecord], modalities: tuple[str, ...], *, image_transform=None,
    audio_sample_rate: int = 16000, audio_seconds: float = 6.0, batch_size: int = 64, progress: bool = True,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{modality: (embeddings [N, D] float32, image ids [N])}; text has all captions of each image."""
    model.eval()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    audio_samples = int(audio_seconds * audio_sample_rate)
    for m in modalities:
        if m == "text":
            items = [(r.image_id, c) for r in records for c in r.captions]
        elif m == "audio":
            items = [(r.image_id, r.audio_path) for r in records if r.audio_path is not None]
        else:
            items = [(r.image_id, r.image_path) for r in records]
        chunks = []
        for start in tqdm(range(0, len(items), batch_size), desc=f"embed {m}", disable=not progress, leave=False):
            raw = [x for _, x in items[start : start + batch_size]]
            if m == "text":
                inputs = model.encoders["text"].tokenize(raw)
            elif m == "image":
                inputs = torch.stack([image_transform(load_image(p)) for p in raw])  # [b, 3, H, W]
            else:
                wave = torch.zeros(len(raw), audio_samples)  # [b, S]
                for row, p in enumerate(raw):
                    clip = torch.from_numpy(load_audio(p, audio_sample_rate, max_seconds=audio_seconds))
                    wave[row, : clip.shape[0]] = clip[:audio_samples]
                inputs = wave
            chunks.append(model.encode(m, inputs).float().cpu().numpy())
        ids = np.array([i for i, _ in items])
        out[m] = (np.concatenate(chunks) if chunks else np.zeros((0, model.embed_dim), np.float32), ids)
    return out


def retrieval_table(embeddings: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Metrics for every ordered pair of modalities, keyed "text->image" etc."""
    from mmcl.eval.retrieval import retrieval_metrics

    table: dict[str, dict[str, float]] = {}
    for q, g in permutations(sorted(embeddings), 2):
        (qe, qi), (ge, gi) = embeddings[q], embeddings[g]
        table[f"{q}->{g}"] = retrieval_metrics(qe, ge, qi, gi)
    return table


def format_table(before: dict[str, Any] | None, after: dict[str, Any], chance: dict[str, float] | None = None) -> str:
    keys = ["R@1", "R@5", "R@10"]
    lines = ["| direction | " + " | ".join(f"{k} before" for k in keys) + " | " + " | ".join(f"{k} after" for k in keys)
             + (" | R@5 chance |" if chance else " |"),
             "|---" * (1 + 2 * len(keys) + (1 if chance else 0)) + "|"]
    for direction, metrics in after.items():
        b = before.get(direction, {}) if before else {}
        row = [direction] + [f"{b.get(k, float('nan')):.1f}" for k in keys] + [f"{metrics[k]:.1f}" for k in keys]
        if chance:
            row.append(f"{chance.get(direction, float('nan')):.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def chance_recall(embeddings: dict[str, tuple[np.ndarray, np.ndarray]], k: int = 5) -> dict[str, float]:
    """Expected R@k of a random ranking: 1 - C(N - P, k) / C(N, k), averaged over queries (in %)."""
    from math import comb

    out = {}
    for q, g in permutations(sorted(embeddings), 2):
        qi, gi = embeddings[q][1], embeddings[g][1]
        n = len(gi)
        vals = []
        for qid in qi:
            p = int((gi == qid).sum())
            vals.append(1 - comb(n - p, k) / comb(n, k) if n >= k else 1.0)
        out[f"{q}->{g}"] = 100.0 * float(np.mean(vals))
    return out
