"""The one interface every objective follows.

    emb = objective.embed(model, batch)          # {"text": [B, D], "image": [B, D], ...} unit norm
    terms = objective(emb, present=batch["present"], logit_scale=model.logit_scale.exp(), batch=batch)
    loss = sum(v for k, v in terms.items() if k.endswith("_loss"))

`embed` is a hook for objectives that need more than one forward pass (a second dropout view for
SimCSE/KDMCSE, momentum keys for a negative queue); the default is one pass of the model. Terms whose
key does not end in `_loss` are logged but not optimised (accuracies, temperatures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn


class Objective(nn.Module):
    """Base class: subclasses implement `forward` and may override `embed`, `attach`, `after_step`."""

    def attach(self, model: nn.Module) -> None:
        """Called once when the objective is paired with its model (e.g. to build a momentum copy)."""

    def embed(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return model(batch["inputs"], present=batch.get("present"))

    def after_step(self, model: nn.Module) -> None:
        """Called after each optimiser step (momentum updates, queue maintenance)."""

    def forward(
        self,
        emb: Mapping[str, Tensor],
        *,
        present: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | float | None = None,
        batch: Mapping[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        raise NotImplementedError


def resolve_scale(logit_scale: Tensor | float | None, temperature: float | None) -> Tensor | float:
    """1/τ: a fixed temperature from the objective's config wins over the model's learnable scale."""
    if temperature is not None:
        return 1.0 / temperature
    if logit_scale is None:
        raise ValueError("objective needs either a fixed temperature or the model's logit_scale")
    return logit_scale


def present_mask(present: Mapping[str, Tensor] | None, modality: str, like: Tensor) -> Tensor:
    """Bool [B]: which samples carry `modality` (all of them when no mask is given)."""
    if present is None or modality not in present:
        return torch.ones(like.shape[0], dtype=torch.bool, device=like.device)
    return present[modality].to(device=like.device, dtype=torch.bool)


def sum_losses(terms: Mapping[str, Tensor]) -> Tensor:
    losses = [v for k, v in terms.items() if k.endswith("_loss")]
    if not losses:
        raise ValueError(f"objective returned no *_loss term (keys: {sorted(terms)})")
    return torch.stack([torch.as_tensor(v) for v in losses]).sum()


def embed_dim_of(model: nn.Module | None, given: int | None, who: str) -> int:
    """The shared embedding width D: `given` if set, else `model.embed_dim` (objectives that own
    parameters or buffers of width D need it before the first batch, so that checkpoints load)."""
    if given is not None:
        return int(given)
    dim = getattr(model, "embed_dim", None)
    if dim is None:
        raise ValueError(f"objective {who} needs embed_dim: set it in the objective options or attach a model with .embed_dim")
    return int(dim)
