"""Symmetric CLIP / InfoNCE, for two modalities or summed over all pairs of N.

Relations: the tilting "conditional symmetric" loss with a cosine tilt equals this loss minus log B
(METHODS.md §2); FABind with anchor A is the sum over pairs that contain A (fabind.py); the full graph
is the sum over all pairs (fullgraph.py, the default of this objective).
Reference: Radford et al. 2021 (CLIP); van den Oord et al. 2018 (InfoNCE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcl.objectives.base import Objective, present_mask, resolve_scale
from mmcl.objectives.gather import global_batch
from mmcl.registry import OBJECTIVES


def info_nce(query: Tensor, keys: Tensor, scale: Tensor | float) -> Tensor:
    """NCE(query→keys) = −(1/B) Σ_i log softmax_j(scale ⟨q_i, k_j⟩)_i for row-aligned [B, D] inputs."""
    logits = scale * query @ keys.T  # [B, B]
    return F.cross_entropy(logits, torch.arange(query.shape[0], device=query.device))


def clip_loss(a: Tensor, b: Tensor, scale: Tensor | float) -> Tensor:
    """½[NCE(a→b) + NCE(b→a)] for row-aligned unit vectors a, b: [B, D]."""
    logits = scale * a @ b.T  # [B, B]
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def pair_accuracy(a: Tensor, b: Tensor) -> Tensor:
    """Fraction of rows of a whose nearest b is its own pair (a cheap training-time signal)."""
    with torch.no_grad():
        return (torch.argmax(a @ b.T, dim=1) == torch.arange(a.shape[0], device=a.device)).float().mean()


def masked_pair_terms(
    emb: Mapping[str, Tensor],
    pairs: Sequence[tuple[str, str]],
    present: Mapping[str, Tensor] | None,
    scale: Tensor | float,
) -> dict[str, Tensor]:
    """{"m_n_loss": clip_loss, "m_n_acc": ...} per pair, over the samples that carry both modalities.

    A pair with fewer than two such samples contributes nothing (InfoNCE needs a negative).
    """
    terms: dict[str, Tensor] = {}
    for m, n in pairs:
        za, zb = emb[m], emb[n]
        keep = present_mask(present, m, za) & present_mask(present, n, zb)  # [B]
        if int(keep.sum()) < 2:
            continue
        terms[f"{m}_{n}_loss"] = clip_loss(za[keep], zb[keep], scale)
        terms[f"{m}_{n}_acc"] = pair_accuracy(za[keep], zb[keep])
    return terms


@OBJECTIVES.register("clip")
class ClipObjective(Objective):
    """Symmetric InfoNCE over the given pairs of modalities (default: every pair present in `emb`).

    Samples missing either modality of a pair are left out of that pair's term; a pair with fewer than
    two samples contributes nothing. Under torch.distributed the terms are over the global batch
    (gather.global_batch).
    """

    def __init__(
        self, pairs: Sequence[Sequence[str]] | None = None, temperature: float | None = None
    ) -> None:
        super().__init__()
        self.pairs = [tuple(p) for p in pairs] if pairs else None
        self.temperature = temperature

    def select_pairs(self, emb: Mapping[str, Tensor]) -> list[tuple[str, str]]:
        """The modality pairs this objective contrasts (subclasses choose a topology here)."""
        return self.pairs or list(combinations(sorted(emb), 2))

    def forward(
        self,
        emb: Mapping[str, Tensor],
        *,
        present: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | float | None = None,
        batch: Mapping[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        scale = resolve_scale(logit_scale, self.temperature)
        emb, present, _ = global_batch(emb, present)  # [W·B, D] each under DDP; unchanged otherwise
        return masked_pair_terms(emb, self.select_pairs(emb), present, scale)
