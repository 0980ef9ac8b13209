"""Unsupervised SimCSE: two dropout views of the same sentence are the positive pair.

    L = NCE(h→h') = −(1/B) Σ_i log( e^{⟨h_i,h'_i⟩/τ} / Σ_j e^{⟨h_i,h'_j⟩/τ} ),   τ = 0.05 fixed

`embed` runs the text encoder twice on the same tokens; with the model in train mode the two passes
draw different dropout masks, which is the whole augmentation.

Relations: KDMCSE (kdmcse.py) with m1 = m2 = 0, no teacher filter and λ = 0 is this loss (tested);
with λ > 0, no margins, no filter and no caption term it is MCSE (registered there as "mcse").
Reference: Gao, Yao, Chen 2021, "SimCSE" (arXiv 2104.08821), unsupervised setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.objectives.base import Objective, present_mask, resolve_scale
from mmcl.objectives.clip import info_nce, pair_accuracy
from mmcl.objectives.gather import global_batch
from mmcl.registry import OBJECTIVES


def simcse_loss(h: Tensor, h_view: Tensor, scale: Tensor | float) -> Tensor:
    """NCE(h→h') with logit scale 1/τ, for row-aligned unit vectors [B, D]."""
    return info_nce(h, h_view, scale)


def dropout_views(model: nn.Module, text_inputs: Mapping[str, Tensor], views: int = 2) -> list[Tensor]:
    """`views` unit-norm encodings of the same text batch (different dropout masks in train mode)."""
    return [F.normalize(model.encode("text", text_inputs), dim=-1) for _ in range(views)]  # each [B, D]


@OBJECTIVES.register("simcse")
class SimCSEObjective(Objective):
    """SimCSE with dropout views of the "text" modality.

    Args:
        temperature: fixed τ (0.05 as in the paper); None uses the model's learnable logit scale.
    Inputs:
        emb: {"text": h [B, D], "text_view": h' [B, D]} as produced by `embed`.
    """

    def __init__(self, temperature: float | None = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def embed(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        h, h_view = dropout_views(model, batch["inputs"]["text"])
        return {"text": h, "text_view": h_view}

    def forward(
        self,
        emb: Mapping[str, Tensor],
        *,
        present: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | float | None = None,
        batch: Mapping[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        if "text" not in emb or "text_view" not in emb:
            raise ValueError(
                f"objective simcse needs emb['text'] and emb['text_view'] (from SimCSEObjective.embed); got {sorted(emb)}"
            )
        scale = resolve_scale(logit_scale, self.temperature)
        emb, present, _ = global_batch({k: emb[k] for k in ("text", "text_view")}, present)  # all ranks' rows
        keep = present_mask(present, "text", emb["text"])  # [B]; samples without text are left out
        h, h_view = emb["text"][keep], emb["text_view"][keep]  # [B', D] each
        return {"simcse_loss": simcse_loss(h, h_view, scale), "simcse_acc": pair_accuracy(h, h_view)}
