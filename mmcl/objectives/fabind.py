"""Fixed-anchor binding (FABind; ImageBind's topology): every modality is aligned to one anchor.

    L = Σ_{m ≠ A} ½[NCE(z^A→z^m) + NCE(z^m→z^A)]

Each pair term uses the samples that carry both A and m (presence masks), so a sample missing the
anchor contributes to no term. Non-anchor pairs are never contrasted with each other: that is the
weakness CentroBind addresses (centrobind.py).

Relations: the "core view" topology of the heterogeneous-CL survey; with two modalities it is CLIP;
its loss is the sum of `clip_loss(z^A, z^m)` over m ≠ A (tested).
Reference: Girdhar et al. 2023 (ImageBind); Jeong et al. 2024, arXiv 2410.02086 (FABind naming).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from mmcl.errors import ConfigError
from mmcl.objectives.clip import ClipObjective
from mmcl.registry import OBJECTIVES


@OBJECTIVES.register("fabind")
class FABindObjective(ClipObjective):
    """Symmetric InfoNCE between the anchor modality and each other modality.

    Args:
        anchor: the anchor modality A (any modality of the model, e.g. "image" or "text").
        modalities: the modalities to bind to A (default: every other modality in the embeddings).
        temperature: fixed τ; None uses the model's learnable logit scale.
    """

    def __init__(
        self, anchor: str, modalities: Sequence[str] | None = None, temperature: float | None = None
    ) -> None:
        super().__init__(pairs=None, temperature=temperature)
        if not anchor:
            raise ConfigError("objective fabind: 'anchor' must name a modality")
        self.anchor = anchor
        self.modalities = list(modalities) if modalities else None

    def select_pairs(self, emb: Mapping[str, Tensor]) -> list[tuple[str, str]]:
        if self.anchor not in emb:
            raise ConfigError(
                f"objective fabind: anchor {self.anchor!r} not among the embeddings {sorted(emb)}"
            )
        others = self.modalities or sorted(emb)
        return [(self.anchor, m) for m in others if m != self.anchor]
