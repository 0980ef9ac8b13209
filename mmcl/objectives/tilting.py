"""Contrastive learning as exponential tilting (Baptista, Stuart, Tran): the loss family.

The model of the paired law is the product of the marginals tilted by a similarity s:
    ν(du, dv) = Z⁻¹ exp(s(u, v)/τ) μ_u(du) μ_v(dv),
and each loss below fits ν (or its conditionals) to the data. On a batch of B pairs (u_i, v_i) let
L_ij = s(u_i, v_j)/τ (rows u, columns v); every expectation is a batch mean.

- conditional (symmetric):  −mean_i L_ii + ½ mean_j log mean_i e^{L_ij} + ½ mean_i log mean_j e^{L_ij}
  = CLIP − log B (tested; same minimiser as CLIP).
- weighted / one-sided:     −mean_i[(λ_u/2) log ρ(u_i|v_i) + (λ_v/2) log ρ(v_i|u_i)],
  log ρ(u_i|v_i) = L_ii − log mean_{i'} e^{L_{i'i}}; (1, 1) is the conditional loss, (2, 0) fits u|v only.
- joint likelihood:         −mean_i L_ii + log mean_{(i,j) ∈ N} e^{L_ij}. Default N = all B² pairs
  (`joint_negatives="all"`): the plug-in of μ_u⊗μ_v by the product of the batch's empirical marginals,
  the same normaliser the conditional loss uses; then conditional ≤ joint is Jensen's inequality
  (E_j log E_i e^{L_ij} ≤ log E_ij e^{L_ij}) and holds on every batch (tested on many draws).
  `joint_negatives="off_diagonal"` uses only the B(B−1) shuffled pairs (unbiased for E_{μ_u⊗μ_v});
  the inequality is then NOT guaranteed: it failed on 605 of 2000 random batches of independent unit
  vectors and fails whenever paired logits dominate, since the paired terms leave the normaliser.
- MMD variants (kernel score, our concrete form; the paper leaves the kernel open): a Gaussian kernel
  k(x, x') = exp(−|x − x'|²/(2σ²)) on each modality's features, K^u_{ii'} = k(u_i, u_i'), K^v likewise,
  computed on the *detached* tilt features so that gradients act through the tilt only (a kernel on
  trainable features has a trivial minimiser: collapse all features to one point).
  · mmd_joint: MMD²(μ̂, ν̂) with μ̂ = (1/B) Σ_i δ_(u_i,v_i), ν̂ = Σ_ij W_ij δ_(u_i,v_j), W = softmax of
    L over all B² entries, product kernel K^u ⊗ K^v:
      mean(K^u ⊙ K^v) − (2/B) Σ (K^u W) ⊙ K^v + Σ W ⊙ (K^u W K^v).
  · mmd_conditional: for each v_j the model conditional ν̂(·|v_j) = Σ_i P_ij δ_{u_i}, P = column
    softmax of L, is scored against the observed u_j by the kernel score
      K^u_jj − 2 Σ_i P_ij K^u_ij + Σ_{ii'} P_ij P_i'j K^u_ii'   (= MMD² to δ_{u_j}),
    and symmetrically for u_i → v; weighted by λ_u/2 and λ_v/2 as the one-sided loss.
Tilts: "cosine" ⟨ḡ_u, ḡ_v⟩ (unit vectors), "dot" ⟨g_u, g_v⟩ on raw features (the Gaussian check with
linear encoders), "neg_sq_l2" −|g_u − g_v|²/2.

Reference: Baptista, Stuart, Tran, "A Mathematical Perspective On Contrastive Learning", arXiv 2505.24134.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcl.errors import ConfigError
from mmcl.objectives.base import Objective, present_mask, resolve_scale
from mmcl.objectives.clip import pair_accuracy
from mmcl.objectives.gather import global_batch
from mmcl.registry import OBJECTIVES

TILTS = ("cosine", "dot", "neg_sq_l2")
LOSSES = ("conditional", "weighted", "joint", "mmd_joint", "mmd_conditional")


def tilt_matrix(gu: Tensor, gv: Tensor, tilt: str = "cosine") -> Tensor:
    """S_ij = s(g_u(u_i), g_v(v_j)) for features gu [B, D], gv [B', D] -> [B, B']."""
    if tilt == "cosine":
        return F.normalize(gu, dim=-1) @ F.normalize(gv, dim=-1).T
    if tilt == "dot":
        return gu @ gv.T
    if tilt == "neg_sq_l2":
        # −|a − b|²/2 = ⟨a, b⟩ − |a|²/2 − |b|²/2, exact and cheaper than cdist
        return gu @ gv.T - 0.5 * (gu * gu).sum(-1, keepdim=True) - 0.5 * (gv * gv).sum(-1)[None, :]
    raise ConfigError(f"unknown tilt {tilt!r}; known: {', '.join(TILTS)}")


def _log_mean_exp(x: Tensor, dim: int) -> Tensor:
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def weighted_conditional_loss(
    s: Tensor, tau: Tensor | float, lambda_u: float = 1.0, lambda_v: float = 1.0
) -> Tensor:
    """−mean_i[(λ_u/2) log ρ(u_i|v_i) + (λ_v/2) log ρ(v_i|u_i)] for the tilt matrix s [B, B]."""
    logits = s / tau  # [B, B]
    diag = logits.diagonal()  # [B]
    log_u_given_v = diag - _log_mean_exp(logits, dim=0)  # [B]: normaliser over u' for each v_j
    log_v_given_u = diag - _log_mean_exp(logits, dim=1)  # [B]: normaliser over v' for each u_i
    return -(0.5 * lambda_u * log_u_given_v.mean() + 0.5 * lambda_v * log_v_given_u.mean())


def conditional_loss(s: Tensor, tau: Tensor | float) -> Tensor:
    """The symmetric conditional loss (λ_u = λ_v = 1); equals CLIP − log B for the cosine tilt."""
    return weighted_conditional_loss(s, tau, 1.0, 1.0)


def joint_loss(s: Tensor, tau: Tensor | float, negatives: str = "all") -> Tensor:
    """−mean_i s_ii/τ + log mean_{(i,j)∈N} e^{s_ij/τ}; N = all B² pairs or the off-diagonal ones."""
    logits = s / tau  # [B, B]
    b = logits.shape[0]
    if negatives == "off_diagonal":
        off = ~torch.eye(b, dtype=torch.bool, device=s.device)  # [B, B]
        log_norm = torch.logsumexp(logits[off], dim=0) - math.log(b * (b - 1))
    elif negatives == "all":
        log_norm = torch.logsumexp(logits.reshape(-1), dim=0) - math.log(b * b)
    else:
        raise ConfigError(f"joint_negatives must be 'off_diagonal' or 'all', got {negatives!r}")
    return -logits.diagonal().mean() + log_norm


def gaussian_kernel(x: Tensor, bandwidth: float | None = None) -> Tensor:
    """K_ij = exp(−|x_i − x_j|²/(2σ²)) for x [B, D]; σ = `bandwidth`, or the median pairwise distance."""
    d2 = torch.cdist(x, x).pow(2)  # [B, B]
    if bandwidth is None:
        off = d2[~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)]
        sigma2 = off.median().clamp_min(1e-12) if off.numel() else torch.ones((), dtype=x.dtype)
    else:
        sigma2 = torch.as_tensor(bandwidth**2, dtype=x.dtype, device=x.device)
    return torch.exp(-d2 / (2 * sigma2))


def mmd_joint_loss(s: Tensor, tau: Tensor | float, ku: Tensor, kv: Tensor) -> Tensor:
    """MMD² between the paired batch and the tilted product of its marginals (see module docstring)."""
    b = s.shape[0]
    w = torch.softmax((s / tau).reshape(-1), dim=0).reshape(b, b)  # [B, B], sums to 1
    data_data = (ku * kv).mean()
    data_model = ((ku @ w) * kv).sum() / b
    model_model = (w * (ku @ w @ kv)).sum()
    return data_data - 2 * data_model + model_model


def mmd_conditional_loss(
    s: Tensor, tau: Tensor | float, ku: Tensor, kv: Tensor, lambda_u: float = 1.0, lambda_v: float = 1.0
) -> Tensor:
    """Kernel score of the model conditionals ν̂(u|v_j), ν̂(v|u_i) against the observed partners."""
    logits = s / tau  # [B, B]
    pu = torch.softmax(logits, dim=0)  # [B, B]: column j is ν̂(u | v_j)
    pv = torch.softmax(logits, dim=1)  # [B, B]: row i is ν̂(v | u_i)
    score_u = ku.diagonal() - 2 * (pu * ku).sum(0) + (pu * (ku @ pu)).sum(0)  # [B] over v_j
    score_v = kv.diagonal() - 2 * (pv * kv).sum(1) + (pv * (pv @ kv)).sum(1)  # [B] over u_i
    return 0.5 * lambda_u * score_u.mean() + 0.5 * lambda_v * score_v.mean()


def tilting_loss(
    gu: Tensor,
    gv: Tensor,
    tau: Tensor | float,
    loss: str = "conditional",
    tilt: str = "cosine",
    lambda_u: float = 1.0,
    lambda_v: float = 1.0,
    joint_negatives: str = "all",
    bandwidth: float | None = None,
) -> Tensor:
    """One member of the family on row-aligned features gu [B, D], gv [B, D] (see module docstring)."""
    s = tilt_matrix(gu, gv, tilt)  # [B, B]
    if loss == "conditional":
        return conditional_loss(s, tau)
    if loss == "weighted":
        return weighted_conditional_loss(s, tau, lambda_u, lambda_v)
    if loss == "joint":
        return joint_loss(s, tau, joint_negatives)
    if loss in ("mmd_joint", "mmd_conditional"):
        fu, fv = (F.normalize(g, dim=-1) if tilt == "cosine" else g for g in (gu, gv))
        ku, kv = gaussian_kernel(fu.detach(), bandwidth), gaussian_kernel(fv.detach(), bandwidth)  # [B, B]
        if loss == "mmd_joint":
            return mmd_joint_loss(s, tau, ku, kv)
        return mmd_conditional_loss(s, tau, ku, kv, lambda_u, lambda_v)
    raise ConfigError(f"unknown tilting loss {loss!r}; known: {', '.join(LOSSES)}")


@OBJECTIVES.register("tilting")
class TiltingObjective(Objective):
    """The tilting family over pairs (u, v) of modalities.

    Args:
        loss: "conditional" | "weighted" | "joint" | "mmd_joint" | "mmd_conditional".
        tilt: "cosine" | "dot" | "neg_sq_l2".
        lambda_u, lambda_v: weights of log ρ(u|v) and log ρ(v|u) ("weighted", "mmd_conditional");
            u is the first modality of each pair.
        temperature: fixed τ; None uses the model's learnable logit scale (τ = 1/scale).
        pairs: [(u, v), ...] (default: all pairs of modalities in the embeddings, sorted).
        joint_negatives: "all" (default: B² pairs, conditional ≤ joint holds) or "off_diagonal".
        bandwidth: Gaussian kernel σ for the MMD losses (None: median heuristic per batch).
    """

    def __init__(
        self,
        loss: str = "conditional",
        tilt: str = "cosine",
        lambda_u: float = 1.0,
        lambda_v: float = 1.0,
        temperature: float | None = None,
        pairs: Sequence[Sequence[str]] | None = None,
        joint_negatives: str = "all",
        bandwidth: float | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"objective tilting: unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        if tilt not in TILTS:
            raise ConfigError(f"objective tilting: unknown tilt {tilt!r}; known: {', '.join(TILTS)}")
        if joint_negatives not in ("off_diagonal", "all"):
            raise ConfigError(
                f"objective tilting: joint_negatives must be 'off_diagonal' or 'all', got {joint_negatives!r}"
            )
        self.loss, self.tilt = loss, tilt
        self.lambda_u, self.lambda_v = float(lambda_u), float(lambda_v)
        self.temperature = temperature
        self.pairs = [tuple(p) for p in pairs] if pairs else None
        self.joint_negatives, self.bandwidth = joint_negatives, bandwidth

    def forward(
        self,
        emb: Mapping[str, Tensor],
        *,
        present: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | float | None = None,
        batch: Mapping[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        tau = 1.0 / resolve_scale(logit_scale, self.temperature)
        emb, present, _ = global_batch(emb, present)  # the global batch under DDP (kernels included)
        terms: dict[str, Tensor] = {}
        for u, v in self.pairs or list(combinations(sorted(emb), 2)):
            keep = present_mask(present, u, emb[u]) & present_mask(present, v, emb[v])  # [B]
            if int(keep.sum()) < 2:
                continue
            gu, gv = emb[u][keep], emb[v][keep]  # [B', D] each
            terms[f"{u}_{v}_loss"] = tilting_loss(
                gu,
                gv,
                tau,
                self.loss,
                self.tilt,
                self.lambda_u,
                self.lambda_v,
                self.joint_negatives,
                self.bandwidth,
            )
            terms[f"{u}_{v}_acc"] = pair_accuracy(gu, gv)
        return terms
