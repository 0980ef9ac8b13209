"""Multi-task objective (task heterogeneity): contrastive terms plus a supervised head term.

    L = L_contrastive + β · CE(W z^m + b, y)    over the samples labelled (y ≥ 0) and carrying m

The contrastive part is any registered objective, built by name (default "clip") with its own
options; its embed/attach/after_step hooks are delegated, so e.g. a queue or SimCSE views still work.
The head is a linear classifier on one modality's unit-norm embedding; labels −1 mark unlabelled
samples, which take part in the contrastive terms only.

Relations: β = 0 gives the contrastive objective alone; the survey's "contrastive + supervised head"
bridge between pretraining and downstream task (METHODS.md §1).
Reference: Zheng, Jing, Li, Tong, He, KDD 2024, arXiv 2404.00225 (task heterogeneity).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.errors import ConfigError
from mmcl.objectives.base import Objective, embed_dim_of, present_mask
from mmcl.registry import OBJECTIVES


def supervised_head_loss(logits: Tensor, labels: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
    """(mean CE over kept labelled rows, accuracy or None) for logits [B, C], labels Long[B] (−1 = none)."""
    rows = keep & (labels >= 0)  # [B]
    if not bool(rows.any()):
        # a zero that still touches the head, so DDP sees every parameter used on every step
        return logits.sum() * 0.0, None
    acc = (logits[rows].argmax(dim=1) == labels[rows]).float().mean().detach()
    return F.cross_entropy(logits[rows], labels[rows]), acc


@OBJECTIVES.register("multitask")
class MultiTaskObjective(Objective):
    """A contrastive objective plus β · cross entropy of a linear head on one modality.

    Args:
        num_classes: C, the number of label classes (labels in 0..C−1, −1 = unlabelled).
        head_modality: whose embedding feeds the head ("image" by default).
        beta: weight β of the supervised term.
        contrastive: name of the registered contrastive objective ("clip").
        contrastive_options: its constructor options.
        embed_dim: width D of the embeddings (default: model.embed_dim at attach time).
    Inputs:
        batch["labels"]: Long[B]; absent means no supervised term this batch.
    """

    def __init__(
        self,
        num_classes: int,
        head_modality: str = "image",
        beta: float = 1.0,
        contrastive: str = "clip",
        contrastive_options: Mapping[str, Any] | None = None,
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"objective multitask: num_classes must be ≥ 2, got {num_classes}")
        if contrastive == "multitask":
            raise ConfigError("objective multitask: the contrastive part cannot itself be 'multitask'")
        self.contrastive = OBJECTIVES.build(contrastive, **dict(contrastive_options or {}))
        self.head_modality, self.beta, self.num_classes = head_modality, float(beta), int(num_classes)
        self.head: nn.Linear | None = None
        if embed_dim is not None:
            self.head = nn.Linear(int(embed_dim), self.num_classes)

    def attach(self, model: nn.Module) -> None:
        if self.head is None:
            self.head = nn.Linear(embed_dim_of(model, None, "multitask"), self.num_classes)
        self.contrastive.attach(model)

    def embed(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return self.contrastive.embed(model, batch)

    def after_step(self, model: nn.Module) -> None:
        self.contrastive.after_step(model)

    def forward(
        self,
        emb: Mapping[str, Tensor],
        *,
        present: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | float | None = None,
        batch: Mapping[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        terms = dict(self.contrastive(emb, present=present, logit_scale=logit_scale, batch=batch))
        labels = (batch or {}).get("labels")
        if labels is None or self.beta == 0:
            return terms
        if self.head is None:
            raise ValueError("objective multitask: the head needs embed_dim (set it or attach a model)")
        z = emb[self.head_modality]  # [B, D]
        logits = self.head(z.to(self.head.weight.dtype))  # [B, C]
        labels = torch.as_tensor(labels, device=z.device).long()
        ce, acc = supervised_head_loss(logits, labels, present_mask(present, self.head_modality, z))
        terms["supervised_loss"] = self.beta * ce
        if acc is not None:
            terms["supervised_acc"] = acc
        return terms
