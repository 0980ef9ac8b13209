"""CentroBind: bind every modality to a per-sample centroid anchor instead of a fixed anchor modality.

    a_i = normalise( Σ_{m present in i} w_m z_i^m / Σ_{m present in i} w_m )      # the centroid anchor
    L   = Σ_m ½[ NCE(a→z^m) + NCE(z^m→a) ]    (term m over the samples that carry m)

Options (the paper leaves them open, METHODS.md §4): `weights` (weighted centroid, default uniform),
`stop_gradient` (the anchor is a constant target: gradients reach z^m only through the z^m side of
each term), `min_present` (see below).

Samples missing modalities: the centroid is taken over the modalities the sample has; a missing
modality's embedding (the encoder's output on a zero input) never enters the centroid nor any term.

Samples with exactly one modality m present (documented and tested behaviour): their centroid *is*
z_i^m, so their positive logit in term m is ⟨z_i^m, z_i^m⟩/τ = 1/τ, a constant with zero gradient.
With the default `min_present=1` such samples stay in term m, where they contribute only through
their negatives: they repel the other samples' anchors and are repelled by them (a uniformity term;
a batch where every sample has one modality gives Σ_m ½[NCE(z^m→z^m) + NCE(z^m→z^m)], pure
self-contrast). With `min_present=2` they are dropped from every term (neither query nor negative).
A sample with no modality present is in no term.

Relations: FABind (fabind.py) fixes the anchor to one modality; the full graph (fullgraph.py)
contrasts every pair; with one modality CentroBind is SimCSE-style self-contrast without a second view.
Reference: Jeong, Kim, Namgung, Kang, Chiang, Hero, arXiv 2410.02086 (no public code; the form follows
the paper's description).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcl.errors import ConfigError
from mmcl.objectives.base import Objective, present_mask, resolve_scale
from mmcl.objectives.clip import clip_loss, pair_accuracy
from mmcl.objectives.gather import global_batch
from mmcl.registry import OBJECTIVES


def centroid_anchor(
    emb: Mapping[str, Tensor],
    present: Mapping[str, Tensor] | None = None,
    weights: Mapping[str, float] | None = None,
    stop_gradient: bool = False,
) -> tuple[Tensor, Tensor]:
    """The per-sample anchor a [B, D] and the number of present modalities per sample [B].

    Args:
        emb: {modality: z [B, D]} unit-norm embeddings (the modalities that form the centroid).
        present: {modality: Bool[B]}; absent entries mean "all present".
        weights: {modality: w ≥ 0} for a weighted centroid (missing keys weigh 1).
        stop_gradient: detach the anchor from the graph.
    """
    mods = sorted(emb)
    z = torch.stack([emb[m] for m in mods], dim=1)  # [B, M, D]
    mask = torch.stack([present_mask(present, m, emb[m]) for m in mods], dim=1)  # [B, M]
    w = torch.tensor(
        [float((weights or {}).get(m, 1.0)) for m in mods], dtype=z.dtype, device=z.device
    )  # [M]
    wm = mask.to(z.dtype) * w  # [B, M]
    # where() rather than a product: a missing modality's output may be anything, even non-finite.
    total = (wm.unsqueeze(-1) * torch.where(mask.unsqueeze(-1), z, torch.zeros_like(z))).sum(dim=1)  # [B, D]
    anchor = F.normalize(total / wm.sum(dim=1, keepdim=True).clamp_min(1e-12), dim=-1)  # [B, D]
    if stop_gradient:
        anchor = anchor.detach()
    return anchor, mask.sum(dim=1)


def centrobind_terms(
    emb: Mapping[str, Tensor],
    scale: Tensor | float,
    present: Mapping[str, Tensor] | None = None,
    weights: Mapping[str, float] | None = None,
    stop_gradient: bool = False,
    min_present: int = 1,
) -> dict[str, Tensor]:
    """{"centrobind_<m>_loss": ½[NCE(a→z^m) + NCE(z^m→a)], "centrobind_<m>_acc": ...} per modality m.

    Term m runs over the samples that carry m and at least `min_present` modalities; a term with
    fewer than two such samples is left out (InfoNCE needs a negative).
    """
    anchor, count = centroid_anchor(emb, present, weights, stop_gradient)  # [B, D], [B]
    terms: dict[str, Tensor] = {}
    for m in sorted(emb):
        keep = present_mask(present, m, emb[m]) & (count >= min_present)  # [B]
        if int(keep.sum()) < 2:
            continue
        terms[f"centrobind_{m}_loss"] = clip_loss(anchor[keep], emb[m][keep], scale)
        terms[f"centrobind_{m}_acc"] = pair_accuracy(emb[m][keep], anchor[keep])
    return terms


@OBJECTIVES.register("centrobind")
class CentroBindObjective(Objective):
    """CentroBind over `modalities` (default: every modality in the embeddings).

    Args:
        modalities: modalities that form the centroid and get a term.
        weights: {modality: weight} for a weighted centroid (default uniform).
        stop_gradient: treat the anchor as a constant (no gradient through the centroid).
        min_present: samples with fewer present modalities are left out of every term (1 keeps all;
            2 drops single-modality samples, whose own positive is trivially aligned).
        temperature: fixed τ; None uses the model's learnable logit scale.
    """

    def __init__(
        self,
        modalities: Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
        stop_gradient: bool = False,
        min_present: int = 1,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        if weights and any(float(v) < 0 for v in weights.values()):
            raise ConfigError(f"objective centrobind: weights must be ≥ 0, got {dict(weights)}")
        if min_present < 1:
            raise ConfigError(f"objective centrobind: min_present must be ≥ 1, got {min_present}")
        self.modalities = sorted(modalities) if modalities else None
        self.weights = dict(weights) if weights else None
        self.stop_gradient = stop_gradient
        self.min_present = min_present
        self.temperature = temperature

    def forward(
        self,
        emb: Mapping[str, Tensor],
        *,
        present: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | float | None = None,
        batch: Mapping[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        mods = self.modalities or sorted(emb)
        missing = [m for m in mods if m not in emb]
        if missing:
            raise ConfigError(f"objective centrobind: no embeddings for {missing} (have {sorted(emb)})")
        scale = resolve_scale(logit_scale, self.temperature)
        # the global batch under DDP: centroids are per sample, but every term's negatives span all ranks
        emb, present, _ = global_batch({m: emb[m] for m in mods}, present)
        return centrobind_terms(emb, scale, present, self.weights, self.stop_gradient, self.min_present)
