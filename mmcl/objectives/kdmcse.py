"""KDMCSE: SimCSE with an angular margin, grounded in images, with a frozen teacher's similarities.

Student text views h, h' (two dropout passes); teacher similarities α_ij = ⟨t_i, t_j⟩ between the
batch's items (batch["teacher"][name] [B, Dt], unit norm). θ_ij = arccos⟨query_i, key_j⟩.

    L_text  = −mean_i log( e^{cos θ_ii/τ} / (e^{cos θ_ii/τ} + Σ_{j≠i} e^{cos(θ_ij − m1)/τ}) )      h → h'
    L_{t→x} = −mean_i log( e^{cos θ_ii/τ} / (e^{cos θ_ii/τ} + Σ_{j≠i} φ_ij e^{cos(θ_ij − m2 Δ_ij)/τ}) )
              Δ_ij = |1 − α_ij|, φ_ij = 1[α_ij < thr]  (AdapACSE; averaged over the views h and h')
    L = L_text + λ (L_{t→v} + L_{t→c})

The margin shifts a negative only where θ_ij exceeds it (cos(θ − m) for θ > m, cos θ otherwise), so
negatives are made harder and never pushed past the positive's angle. t→v contrasts the student's
text with the model's image embedding (α = teacher image–image similarity); t→c contrasts it with the
teacher's caption embedding mapped to width D by a trainable Linear+Tanh (α = caption–caption
similarity), as the official code's `tmlp`. Rows whose image is absent (text-only batches) get
L_text only.

Deviations from the official code, on purpose: the filter uses the same within-modality teacher
similarity as the margin (the official filter compares CLIP image and caption features, which share a
space; our text and image teachers do not); the margin condition is θ_ij > m_ij (per pair) rather than
θ_ij > m2, so cos(θ − m) never wraps past zero angle. `filter_text` (off by default, as in the paper)
also filters the text term with caption–caption similarity.

Relations: with m1 = m2 = 0, no filter and λ = 0 it is SimCSE (tested); "mcse" below is this loss with
no margins, no filter and no caption term (MCSE's text→image grounding).
Reference: Nguyen, Nguyen, Wu, Luu, NAACL 2024, arXiv 2403.17486 (official code
github.com/duyngtr16061999/KDMCSE); MCSE: Zhang et al. NAACL 2022.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.objectives.base import Objective, embed_dim_of, present_mask, resolve_scale
from mmcl.objectives.clip import pair_accuracy
from mmcl.objectives.gather import global_batch, is_distributed
from mmcl.objectives.simcse import dropout_views
from mmcl.registry import OBJECTIVES


def angular_margin_cos(cos: Tensor, margin: Tensor | float) -> Tensor:
    """cos(θ_ij − m_ij) off the diagonal where θ_ij > m_ij, cos θ_ij elsewhere; cos, margin: [B, B]."""
    c = cos.clamp(-1.0, 1.0)  # [B, B]
    m = torch.as_tensor(margin, dtype=c.dtype, device=c.device).expand_as(c)  # [B, B]
    # cos(θ − m) = cos θ cos m + sin θ sin m, with sin θ ≥ 0 on [0, π]; avoids acos's infinite slope at ±1
    sin = torch.sqrt((1.0 - c * c).clamp_min(1e-12))
    shifted = c * torch.cos(m) + sin * torch.sin(m)
    off_diag = ~torch.eye(c.shape[0], c.shape[1], dtype=torch.bool, device=c.device)
    apply = off_diag & (c < torch.cos(m))  # θ > m ⇔ cos θ < cos m for m ∈ [0, π]
    return torch.where(apply, shifted, c)


def margin_nce(
    query: Tensor,
    keys: Tensor,
    tau: Tensor | float,
    margin: Tensor | float = 0.0,
    alpha: Tensor | None = None,
    threshold: float | None = None,
) -> Tensor:
    """−mean_i log softmax_j(cos'_ij/τ)_i with the angular margin and the teacher filter φ_ij = 1[α_ij < thr].

    Args:
        query, keys: row-aligned unit vectors [B, D].
        margin: scalar or per-pair [B, B] angular margin (radians) on the negatives.
        alpha: teacher similarities [B, B] (needed when threshold is set).
        threshold: negatives with α_ij ≥ threshold leave the denominator; None keeps all.
    """
    logits = angular_margin_cos(query @ keys.T, margin) / tau  # [B, B]
    if threshold is not None:
        if alpha is None:
            raise ValueError("margin_nce: a threshold needs teacher similarities alpha")
        off_diag = ~torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(off_diag & (alpha >= threshold), float("-inf"))
    return F.cross_entropy(logits, torch.arange(query.shape[0], device=query.device))


def adaptive_margin(alpha: Tensor, margin: float) -> Tensor:
    """AdapACSE margin m2·|1 − α_ij| [B, B]: near-duplicates (α ≈ 1) get none, dissimilar pairs the most."""
    return margin * (1.0 - alpha).abs()


def teacher_similarity(teacher: Mapping[str, Tensor], name: str, keep: Tensor) -> Tensor | None:
    """α = t t^T [B', B'] over the kept rows, or None when the batch has no teacher of that name."""
    t = teacher.get(name)
    if t is None:
        return None
    t = t[keep]  # [B', Dt]
    return t @ t.T


@OBJECTIVES.register("kdmcse")
class KDMCSEObjective(Objective):
    """KDMCSE (defaults = the official settings, METHODS.md §3).

    Args:
        temperature: τ for every term (0.05); None uses the model's learnable logit scale.
        margin1: angular margin m1 on the text term's negatives (0.15 rad).
        margin2: base of the adaptive margin m2·|1 − α| on the cross-modal terms (0.15 rad).
        threshold: teacher-similarity threshold of the false-negative filter (0.8); None disables it.
        lambda_weight: λ on the cross-modal terms (0.01); 0 gives SimCSE with margin m1.
        caption_term: add t→teacher-caption (needs batch["teacher"]["text"] on paired rows).
        filter_text: also filter the text term's negatives by caption–caption teacher similarity.
        teacher_text_dim: width Dt of the cached teacher text embeddings (384 for all-MiniLM-L6-v2).
        embed_dim: width D of the student embeddings (default: model.embed_dim at attach time).
    """

    def __init__(
        self,
        temperature: float | None = 0.05,
        margin1: float = 0.15,
        margin2: float = 0.15,
        threshold: float | None = 0.8,
        lambda_weight: float = 0.01,
        caption_term: bool = True,
        filter_text: bool = False,
        teacher_text_dim: int = 384,
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature, self.margin1, self.margin2 = temperature, float(margin1), float(margin2)
        self.threshold, self.lambda_weight = threshold, float(lambda_weight)
        self.caption_term, self.filter_text = caption_term, filter_text
        self.teacher_text_dim = int(teacher_text_dim)
        self.caption_proj: nn.Module | None = None
        if embed_dim is not None:
            self._build(int(embed_dim))

    def _build(self, dim: int) -> None:
        if self.caption_term and self.lambda_weight > 0 and self.caption_proj is None:
            self.caption_proj = nn.Sequential(nn.Linear(self.teacher_text_dim, dim), nn.Tanh())

    def attach(self, model: nn.Module) -> None:
        if self.caption_term and self.lambda_weight > 0:
            self._build(embed_dim_of(model, None, "kdmcse"))

    def embed(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        h, h_view = dropout_views(model, batch["inputs"]["text"])
        emb = {"text": h, "text_view": h_view}
        image_present = (batch.get("present") or {}).get("image")
        wants_image = self.lambda_weight > 0 and "image" in batch["inputs"]
        # under DDP every rank encodes images: a rank skipping them would leave the ranks' collectives
        # (and DDP's set of used parameters) out of step; absent rows are masked out in forward
        if wants_image and (is_distributed() or image_present is None or bool(image_present.any())):
            emb["image"] = F.normalize(model.encode("image", batch["inputs"]["image"]), dim=-1)
        return emb

    def _cross_term(
        self, views: list[Tensor], keys: Tensor, alpha: Tensor | None, tau: Tensor | float
    ) -> Tensor:
        """½ Σ_views AdapACSE(view → keys) over the paired rows."""
        needs_teacher = self.margin2 > 0 or self.threshold is not None
        if needs_teacher and alpha is None:
            raise ValueError(
                "objective kdmcse: paired rows need batch['teacher'] (image and text) for the margin/filter"
            )
        margin = adaptive_margin(alpha, self.margin2) if self.margin2 > 0 else 0.0
        return torch.stack([margin_nce(v, keys, tau, margin, alpha, self.threshold) for v in views]).mean()

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
                f"objective kdmcse needs emb['text'] and emb['text_view'] (from its embed); got {sorted(emb)}"
            )
        tau = 1.0 / resolve_scale(logit_scale, self.temperature)
        # the global batch under DDP: student views, images, masks and the teacher rows of every rank, so
        # margins and the false-negative filter see the same pairs as one process with the whole batch
        emb, present, teacher = global_batch(emb, present, (batch or {}).get("teacher") or {})
        keep_t = present_mask(present, "text", emb["text"])  # [B]
        h, h_view = emb["text"][keep_t], emb["text_view"][keep_t]  # [B', D]
        alpha_text = teacher_similarity(teacher, "text", keep_t) if self.filter_text else None
        thr_text = self.threshold if self.filter_text else None
        terms = {
            "kdmcse_text_loss": margin_nce(h, h_view, tau, self.margin1, alpha_text, thr_text),
            "kdmcse_text_acc": pair_accuracy(h, h_view),
        }
        if self.lambda_weight > 0 and "image" in emb:
            terms.update(
                self._paired_terms(emb, keep_t & present_mask(present, "image", emb["image"]), teacher, tau)
            )
        return terms

    def _paired_terms(
        self, emb: Mapping[str, Tensor], keep: Tensor, teacher: Mapping[str, Tensor], tau: Tensor | float
    ) -> dict[str, Tensor]:
        """λ·L_{t→v} and λ·L_{t→c} over the rows that carry text and image (nothing if fewer than 2)."""
        if int(keep.sum()) < 2:
            return {}
        views = [emb["text"][keep], emb["text_view"][keep]]  # 2 × [B', D]
        l_tv = self._cross_term(views, emb["image"][keep], teacher_similarity(teacher, "image", keep), tau)
        terms = {"kdmcse_image_loss": self.lambda_weight * l_tv, "kdmcse_image_nce": l_tv.detach()}
        if self.caption_term:
            if "text" not in teacher:
                raise ValueError(
                    "objective kdmcse: caption_term needs batch['teacher']['text'] on paired rows"
                )
            if self.caption_proj is None:
                raise ValueError(
                    "objective kdmcse: the caption term needs embed_dim (set it or attach a model)"
                )
            proj_dtype = next(self.caption_proj.parameters()).dtype
            captions = F.normalize(self.caption_proj(teacher["text"][keep].to(proj_dtype)), dim=-1)  # [B', D]
            l_tc = self._cross_term(views, captions, teacher_similarity(teacher, "text", keep), tau)
            terms.update(
                {"kdmcse_caption_loss": self.lambda_weight * l_tc, "kdmcse_caption_nce": l_tc.detach()}
            )
        return terms


@OBJECTIVES.register("mcse")
def mcse(temperature: float | None = 0.05, lambda_weight: float = 0.01) -> KDMCSEObjective:
    """MCSE: SimCSE + λ·NCE(text→image) over both views (no margins, no teacher, no caption term)."""
    return KDMCSEObjective(
        temperature=temperature,
        margin1=0.0,
        margin2=0.0,
        threshold=None,
        lambda_weight=lambda_weight,
        caption_term=False,
    )
