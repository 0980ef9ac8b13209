"""Full-graph binding: symmetric InfoNCE over every pair of modalities.

    L = Σ_{m < n} ½[NCE(z^m→z^n) + NCE(z^n→z^m)]

Each pair term uses the samples that carry both modalities (presence masks). Cost grows as M(M−1)/2.

Relations: the "full graph" topology of the heterogeneous-CL survey (METHODS.md §1); equals the
default of the "clip" objective (all pairs); FABind keeps only the pairs containing the anchor.
Reference: Tian et al. 2020 (Contrastive Multiview Coding, full graph); Zheng et al. 2024, arXiv 2404.00225.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

from torch import Tensor

from mmcl.objectives.clip import ClipObjective
from mmcl.registry import OBJECTIVES


@OBJECTIVES.register("fullgraph")
class FullGraphObjective(ClipObjective):
    """Symmetric InfoNCE over all pairs of `modalities` (default: every modality in the embeddings).

    Args:
        modalities: which modalities take part (order does not matter).
        temperature: fixed τ; None uses the model's learnable logit scale.
    """

    def __init__(self, modalities: Sequence[str] | None = None, temperature: float | None = None) -> None:
        super().__init__(pairs=None, temperature=temperature)
        self.modalities = sorted(modalities) if modalities else None

    def select_pairs(self, emb: Mapping[str, Tensor]) -> list[tuple[str, str]]:
        return list(combinations(self.modalities or sorted(emb), 2))
