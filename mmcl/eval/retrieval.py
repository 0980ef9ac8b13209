"""Cross-modal retrieval with several positives per query: R@1/5/10, RSUM, MAP, MRR, median rank.

    python -m mmcl eval retrieval --model runs/demo-1a2b3c --pair text:image --output reports/ret.json

Definitions (per direction; queries are the rows of the similarity matrix):
- rank of a query = position (1-based) of its best-ranked positive in the gallery ordering;
- R@K = % of queries whose rank <= K (a hit when any positive is in the top K: with 5 captions per
  image, image->text counts a hit when one of the five is retrieved); RSUM = R@1 + R@5 + R@10;
- MRR = mean of 1/rank (x100); median / mean rank of that first positive;
- MAP = mean over queries of average precision over all positives (x100):
  AP = (1/|P|) sum_j j / position(j-th positive).
Ties (exactly equal similarities) are broken PESSIMISTICALLY by default: among tied items every negative
is placed before every positive, so a tie never helps a query (a constant or collapsed model scores
worst, not best). `ties="optimistic"` places the positives first; the truth under a random order lies
between the two. Queries without any positive in the gallery are left out and counted.

Reference: Karpathy & Fei-Fei (2015) and VSE++ (Faghri et al., 2018) for R@K / RSUM / median rank on
Flickr; ALBEF (Li et al., 2021) for the image-text protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmcl.errors import UserError
from mmcl.registry import EVALUATORS

KS = (1, 5, 10)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors from a training loop
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _first_positive_and_ap(sim: np.ndarray, pos: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """For rows of sim [q, G] / pos [q, G] (each row with >= 1 positive): first-positive rank [q], AP [q]."""
    tie_key = pos if ties == "pessimistic" else ~pos  # lexsort ascending: False (0) first among equal scores
    order = np.lexsort((tie_key, -sim), axis=-1)  # [q, G] by score descending, then the tie rule
    hits = np.take_along_axis(pos, order, axis=1)  # [q, G] bool, gallery in ranked order
    first = hits.argmax(axis=1) + 1  # [q]
    cum = np.cumsum(hits, axis=1)  # [q, G] positives found so far
    positions = np.arange(1, sim.shape[1] + 1)  # [G]
    ap = (cum / positions * hits).sum(axis=1) / hits.sum(axis=1)  # [q]
    return first, ap


def query_ranks(sim: np.ndarray, pos: np.ndarray, ties: str = "pessimistic",
                chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows with a positive [q], their first-positive rank [q], their AP [q]) of sim [Q, G] / pos [Q, G].

    The per-query ranks are what a paired comparison of two models on the same queries resamples."""
    rows = np.flatnonzero(pos.any(axis=1))
    if rows.size == 0:
        raise ValueError("no query has a positive in the gallery")
    firsts, aps = [], []
    for start in range(0, rows.size, chunk):  # bounded memory: [chunk, G] at a time
        r = rows[start : start + chunk]
        first, ap = _first_positive_and_ap(sim[r], pos[r], ties)
        firsts.append(first)
        aps.append(ap)
    return rows, np.concatenate(firsts), np.concatenate(aps)


def retrieval_metrics_from_similarity(
    sim: Any, positives: Any, *, ks: tuple[int, ...] = KS, ties: str = "pessimistic", chunk: int = 1024
) -> dict[str, float]:
    """Metrics of one direction from a similarity matrix [Q, G] and a boolean positives matrix [Q, G].

    Returns R@k (%), rsum, MAP (%), MRR (%), medR, meanR, n_queries, n_queries_without_positive.
    """
    sim, pos = _as_numpy(sim).astype(np.float64), _as_numpy(positives).astype(bool)
    if sim.ndim != 2 or sim.shape != pos.shape:
        raise ValueError(f"similarity {sim.shape} and positives {pos.shape} must be the same [Q, G] shape")
    if not np.isfinite(sim).all():
        raise ValueError("similarity matrix contains NaN or inf")
    if ties not in ("pessimistic", "optimistic"):
        raise ValueError(f"ties must be 'pessimistic' or 'optimistic', not {ties!r}")
    rows, first, ap = query_ranks(sim, pos, ties, chunk)
    out = {f"R@{k}": 100.0 * float((first <= k).mean()) for k in ks}
    out["rsum"] = float(sum(out[f"R@{k}"] for k in ks))
    out.update(
        {
            "MAP": 100.0 * float(ap.mean()),
            "MRR": 100.0 * float((1.0 / first).mean()),
            "medR": float(np.median(first)),
            "meanR": float(first.mean()),
            "n_queries": int(rows.size),
            "n_queries_without_positive": int(sim.shape[0] - rows.size),
        }
    )
    return out


def _normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _similarity_and_positives(query_emb: Any, gallery_emb: Any, query_ids: Any, gallery_ids: Any):
    q = _normalize(_as_numpy(query_emb).astype(np.float64))
    g = _normalize(_as_numpy(gallery_emb).astype(np.float64))
    qid, gid = _as_numpy(query_ids), _as_numpy(gallery_ids)
    if len(q) != len(qid) or len(g) != len(gid):
        raise ValueError(
            f"ids must match embeddings: {len(q)}/{len(qid)} queries, {len(g)}/{len(gid)} gallery items"
        )
    return q @ g.T, qid[:, None] == gid[None, :]  # [Q, G] cosine, [Q, G] positives


def retrieval_metrics(
    query_emb: Any,
    gallery_emb: Any,
    query_ids: Any,
    gallery_ids: Any,
    *,
    ks: tuple[int, ...] = KS,
    ties: str = "pessimistic",
) -> dict[str, float]:
    """Query -> gallery metrics from embeddings [Q, D], [G, D] and group ids [Q], [G] (positives: equal ids).

    Cosine similarity (rows are L2-normalised here). Ids are group keys, not row keys: the 5 captions of
    an image all carry the image id. Keys as retrieval_metrics_from_similarity ("R@1", ..., "MAP").
    """
    sim, pos = _similarity_and_positives(query_emb, gallery_emb, query_ids, gallery_ids)
    return retrieval_metrics_from_similarity(sim, pos, ks=ks, ties=ties)


def bidirectional_retrieval_metrics(
    a_emb: Any,
    b_emb: Any,
    a_ids: Any,
    b_ids: Any,
    *,
    names: tuple[str, str] = ("a2b", "b2a"),
    ks: tuple[int, ...] = KS,
    ties: str = "pessimistic",
) -> dict[str, float]:
    """Both directions, keys "<name>/<metric>", plus "rsum": the usual sum of the six recalls."""
    sim, pos = _similarity_and_positives(a_emb, b_emb, a_ids, b_ids)
    out: dict[str, float] = {}
    for name, (s, p) in zip(names, ((sim, pos), (sim.T, pos.T)), strict=True):
        for key, value in retrieval_metrics_from_similarity(s, p, ks=ks, ties=ties).items():
            out[f"{name}/{key}"] = value
    out["rsum"] = out[f"{names[0]}/rsum"] + out[f"{names[1]}/rsum"]
    return out


@EVALUATORS.register("retrieval")
class RetrievalEvaluator:
    """Flickr8k retrieval between two modalities of an mmcl model, both directions.

    Items: one per image for image and audio (speech of the first caption), one per caption for text
    (5 per image); every item carries its image id, so an image has 5 positive captions.

    Args:
        pair: (modality a, modality b), e.g. ("text", "image"); keys are "a2b/..." and "b2a/...".
        split: official Flickr8k split of the images ("test", "dev", "train", "none").
        data_dir: data root; max_images: first N images of the split (quick runs).
    """

    def __init__(
        self,
        pair: tuple[str, str],
        split: str = "test",
        data_dir: str | Path | None = None,
        max_images: int | None = None,
        batch_size: int = 64,
    ) -> None:
        from mmcl.data.flickr import load_flickr_triples

        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"pair must name two different modalities, got {pair}")
        self.pair, self.split, self.batch_size = tuple(pair), split, batch_size
        records = [r for r in load_flickr_triples(data_dir) if r.split == split]
        if not records:
            raise UserError(f"no Flickr8k images in split {split!r}")
        self.records = records[:max_images] if max_images else records

    def __call__(self, model: Any, config: dict[str, Any] | None = None) -> dict[str, Any]:
        from mmcl.config import DataConfig
        from mmcl.train.evaluate import embed_records

        missing = [m for m in self.pair if m not in model.encoders]
        if missing:
            raise UserError(
                f"the model has no {', '.join(missing)} tower (it has {', '.join(model.encoders)})"
            )
        data_cfg = (config or {}).get("data", {})
        image_transform = model.encoders["image"].transform(train=False) if "image" in self.pair else None
        emb = embed_records(
            model,
            self.records,
            self.pair,
            image_transform=image_transform,
            batch_size=self.batch_size,
            audio_sample_rate=int(data_cfg.get("audio_sample_rate", DataConfig.audio_sample_rate)),
            audio_seconds=float(data_cfg.get("audio_seconds", DataConfig.audio_seconds)),
        )
        a, b = self.pair
        (emb_a, ids_a), (emb_b, ids_b) = emb[a], emb[b]
        metrics: dict[str, Any] = bidirectional_retrieval_metrics(
            emb_a, emb_b, ids_a, ids_b, names=(f"{a}2{b}", f"{b}2{a}")
        )
        # per query: its group (image id) and first-positive rank, for paired comparisons of two models
        sim, pos = _similarity_and_positives(emb_a, emb_b, ids_a, ids_b)
        per_item: dict[str, np.ndarray] = {}
        for name, sim_d, pos_d, qids in ((f"{a}2{b}", sim, pos, ids_a), (f"{b}2{a}", sim.T, pos.T, ids_b)):
            rows, first, _ = query_ranks(sim_d, pos_d)
            per_item[f"{name}/group"] = np.asarray(_as_numpy(qids)[rows]).astype(str)
            per_item[f"{name}/rank"] = first.astype(np.int64)
        metrics["per_item"] = per_item
        metrics["details"] = {
            "split": self.split,
            "n_images": len(self.records),
            "n_items": {a: len(ids_a), b: len(ids_b)},
            "ties": "pessimistic",
            "scale": "R@K, MAP, MRR in %; ranks 1-based",
        }
        return metrics
