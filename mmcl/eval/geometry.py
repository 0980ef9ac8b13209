"""Alignment and uniformity of an embedding space (Wang & Isola, ICML 2020). Lower is better for both.

    python -m mmcl eval geometry --model all-minilm-l6-v2 --output reports/geometry.json

alignment(x, y)  = E_{(i) positive pairs} ||x_i - y_i||_2^alpha          (alpha = 2)
uniformity(x)    = log E_{i < j} exp(-t ||x_i - x_j||_2^2)                (t = 2)
Both expect unit-norm rows (the evaluator normalises). alignment ∈ [0, 4]; uniformity ∈ [-4, 0]
(-4 would need every pair antipodal; 0 is a collapse to one point).

Text protocol (SimCSE, Gao et al. 2021, section 5): positive pairs are STS-B pairs with gold score > 4,
uniformity is over all STS-B sentences of the split.

Reference: Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
Uniformity on the Hypersphere", ICML 2020 (their `align_loss` / `uniform_loss`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmcl.eval.embedders import TextEmbedder
from mmcl.registry import EVALUATORS


def alignment(x: Any, y: Any, alpha: float = 2.0) -> float:
    """Mean ||x_i - y_i||^alpha over paired rows of x [N, D] and y [N, D]."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2 or len(x) == 0:
        raise ValueError(
            f"alignment needs two non-empty [N, D] arrays of one shape, got {x.shape} and {y.shape}"
        )
    return float((np.linalg.norm(x - y, axis=1) ** alpha).mean())


def uniformity(x: Any, t: float = 2.0, chunk: int = 2048) -> float:
    """log of the mean over distinct pairs i < j of exp(-t ||x_i - x_j||^2), x [N, D], N >= 2.

    Computed in row blocks (memory [chunk, N]) with a log-sum-exp, so N in the tens of thousands is fine.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if x.ndim != 2 or n < 2:
        raise ValueError(f"uniformity needs an [N, D] array with N >= 2, got shape {x.shape}")
    sq = (x * x).sum(axis=1)  # [N]
    chunk_logsums, count = [], 0
    for start in range(0, n - 1, chunk):
        rows = np.arange(start, min(start + chunk, n - 1))
        d2 = np.maximum(sq[rows, None] + sq[None, :] - 2.0 * x[rows] @ x.T, 0.0)  # [c, N]
        upper = np.arange(n)[None, :] > rows[:, None]  # keep j > i only: each pair once
        values = (-t * d2)[upper]
        peak = values.max()
        chunk_logsums.append(peak + np.log(np.exp(values - peak).sum()))  # log sum over this block
        count += values.size
    logsums = np.asarray(chunk_logsums)
    peak = logsums.max()
    return float(peak + np.log(np.exp(logsums - peak).sum()) - np.log(count))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@EVALUATORS.register("geometry")
class GeometryEvaluator:
    """Alignment on STS-B pairs with gold > `threshold` and uniformity on all STS-B sentences."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        split: str = "test",
        threshold: float = 4.0,
        max_pairs: int | None = None,
    ) -> None:
        from mmcl.data.senteval import StsSubset, load_sts

        (full,) = load_sts("stsb", data_dir, split)
        n = max_pairs or len(full)  # first N pairs (quick runs)
        self.subset = StsSubset(
            full.name, full.sentences1[:n], full.sentences2[:n], full.scores[:n], full.source
        )
        self.split, self.threshold = split, threshold

    def __call__(self, embedder: TextEmbedder) -> dict[str, Any]:
        sub = self.subset
        unique = list(dict.fromkeys(sub.sentences1 + sub.sentences2))
        emb = _unit(embedder.encode(unique).astype(np.float64))  # [U, D]
        row = {s: i for i, s in enumerate(unique)}
        keep = np.flatnonzero(sub.scores > self.threshold)
        a = emb[[row[sub.sentences1[i]] for i in keep]]  # [P, D]
        b = emb[[row[sub.sentences2[i]] for i in keep]]  # [P, D]
        return {
            "alignment": alignment(a, b),
            "uniformity": uniformity(emb),
            "details": {
                "data": f"STS-B {self.split}",
                "positive_pairs": int(len(keep)),
                "threshold": self.threshold,
                "n_sentences": len(unique),
                "alpha": 2.0,
                "t": 2.0,
                "model": embedder.describe() if hasattr(embedder, "describe") else {},
            },
        }
