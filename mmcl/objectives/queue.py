"""In-batch contrast extended with a FIFO queue of momentum-encoder keys (MoCo; ALBEF for image–text).

For each direction q→k between two modalities, the query z^q_i is scored against the keys
[in-batch keys ; queue of K earlier keys of modality k] with logits ⟨z^q_i, key_j⟩/τ. Queue entries
that are still empty are masked out. The loss is a multi-positive cross entropy (ALBEF's retrieval
form): every key whose sample id equals the query's (batch["sample_index"]: the captions of one image
share it) is a positive, and the target spreads uniform mass over them,

    y_ij = 1[id_j = id_i] / #{j : id_j = id_i},    ℓ_i = −Σ_j y_ij log softmax_j(logits_i),

so an earlier caption of the same image sitting in the queue is pulled closer instead of pushed away.
With momentum distillation (α > 0) the target becomes α·softmax(momentum logits) + (1 − α)·y,
the momentum logits scoring the momentum query against [momentum in-batch keys ; queue].
The pair term is ½[ℓ(q→k) + ℓ(k→q)], named like CLIP's ("image_text_loss").

Keys in the queue come from a momentum copy θ_k ← m θ_k + (1 − m) θ_q of the model, built in
`attach` and updated in `after_step` (after each optimiser step), which then enqueues the step's keys
(gathered across DDP ranks). In-batch keys are the online embeddings by default (`batch_keys="online"`,
so gradients reach both towers as in CLIP and queue_size=0 is exactly the in-batch CLIP loss when
sample ids are unique); `batch_keys="momentum"` uses momentum keys in-batch, as ALBEF does.
The queue, its ids and pointers are registered buffers, so they are saved in checkpoints with the
momentum copy.

Reference: He et al. 2020 (MoCo), Li et al. 2021 (ALBEF, arXiv 2107.07651); METHODS.md §5.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.errors import ConfigError
from mmcl.objectives.base import Objective, embed_dim_of, present_mask, resolve_scale
from mmcl.objectives.clip import pair_accuracy
from mmcl.objectives.gather import gather_no_grad
from mmcl.registry import OBJECTIVES


def multi_positive_targets(query_ids: Tensor, key_ids: Tensor, valid: Tensor) -> Tensor:
    """y [B, N]: uniform over the valid keys sharing the query's id (rows without one are all zero)."""
    pos = (query_ids[:, None] == key_ids[None, :]) & valid[None, :]  # [B, N]
    return pos.to(torch.get_default_dtype()) / pos.sum(dim=1, keepdim=True).clamp_min(1)


def soft_cross_entropy(logits: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
    """−mean_i Σ_j y_ij log softmax_j(logits_i) over the valid keys [N] only."""
    logp = torch.log_softmax(logits.masked_fill(~valid[None, :], float("-inf")), dim=1)  # [B, N]
    return -(targets.to(logp.dtype) * logp.masked_fill(~valid[None, :], 0.0)).sum(dim=1).mean()


def queue_loss(
    query: Tensor,
    batch_keys: Tensor,
    queue: Tensor,
    query_ids: Tensor,
    queue_ids: Tensor,
    scale: Tensor | float,
    alpha: float = 0.0,
    momentum_query: Tensor | None = None,
    momentum_keys: Tensor | None = None,
) -> Tensor:
    """Multi-positive InfoNCE of query [B, D] against [batch_keys [B, D] ; queue [K, D]].

    Args:
        query_ids: sample ids of the batch rows [B] (the in-batch keys carry the same ids).
        queue_ids: ids of the queue entries [K], −1 for empty slots (masked out).
        alpha: momentum-distillation weight; needs momentum_query and momentum_keys [B, D].
    """
    keys = torch.cat([batch_keys, queue.to(batch_keys.dtype)])  # [B+K, D]
    key_ids = torch.cat([query_ids, queue_ids])  # [B+K]
    valid = torch.cat([torch.ones_like(query_ids, dtype=torch.bool), queue_ids >= 0])  # [B+K]
    logits = scale * query @ keys.T  # [B, B+K]
    targets = multi_positive_targets(query_ids, key_ids, valid).to(logits.dtype)
    if alpha > 0:
        if momentum_query is None or momentum_keys is None:
            raise ValueError("queue_loss: momentum distillation needs momentum_query and momentum_keys")
        with torch.no_grad():
            m_keys = torch.cat([momentum_keys, queue.to(momentum_keys.dtype)])  # [B+K, D]
            m_logits = (scale * momentum_query @ m_keys.T).masked_fill(~valid[None, :], float("-inf"))
            targets = alpha * torch.softmax(m_logits, dim=1) + (1 - alpha) * targets
    return soft_cross_entropy(logits, targets, valid)


@OBJECTIVES.register("queue")
class QueueObjective(Objective):
    """Symmetric InfoNCE over each pair of `modalities`, with a FIFO queue of momentum keys per modality.

    Args:
        modalities: the modalities contrasted pairwise (each gets a queue of its keys).
        queue_size: K keys per modality; 0 gives the in-batch loss.
        momentum: EMA coefficient m of the key encoder (ALBEF 0.995; MoCo 0.999).
        temperature: fixed τ; None uses the model's learnable logit scale (ALBEF).
        distill_alpha: momentum-distillation weight α (ALBEF 0.4; 0 disables).
        batch_keys: "online" (default) or "momentum" for the in-batch keys.
        embed_dim: width D of the queue (default: model.embed_dim at attach time).
    Inputs:
        batch["sample_index"]: Long[B] sample ids (required when queue_size > 0).
    """

    def __init__(
        self,
        modalities: Sequence[str] = ("image", "text"),
        queue_size: int = 4096,
        momentum: float = 0.995,
        temperature: float | None = None,
        distill_alpha: float = 0.0,
        batch_keys: str = "online",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        if len(modalities) < 2:
            raise ConfigError(f"objective queue: needs at least two modalities, got {list(modalities)}")
        if queue_size < 0 or not 0.0 <= momentum <= 1.0 or not 0.0 <= distill_alpha <= 1.0:
            raise ConfigError("objective queue: need queue_size ≥ 0, 0 ≤ momentum ≤ 1, 0 ≤ distill_alpha ≤ 1")
        if batch_keys not in ("online", "momentum"):
            raise ConfigError(
                f"objective queue: batch_keys must be 'online' or 'momentum', got {batch_keys!r}"
            )
        self.modalities = sorted(modalities)
        self.queue_size, self.momentum = int(queue_size), float(momentum)
        self.temperature, self.distill_alpha, self.batch_keys = temperature, float(distill_alpha), batch_keys
        self.momentum_model: nn.Module | None = None
        self._pending: list[tuple[str, Tensor, Tensor]] = []  # keys waiting for after_step
        self._built = False
        if embed_dim is not None:
            self._build_queues(int(embed_dim))

    @property
    def needs_momentum(self) -> bool:
        return self.queue_size > 0 or self.distill_alpha > 0 or self.batch_keys == "momentum"

    def _build_queues(self, dim: int) -> None:
        for m in self.modalities:
            self.register_buffer(f"queue_{m}", torch.zeros(self.queue_size, dim))
            self.register_buffer(f"queue_ids_{m}", torch.full((self.queue_size,), -1, dtype=torch.long))
            self.register_buffer(f"queue_ptr_{m}", torch.zeros((), dtype=torch.long))
        self._built = True

    def attach(self, model: nn.Module) -> None:
        if not self._built:
            self._build_queues(embed_dim_of(model, None, "queue"))
        if self.needs_momentum and self.momentum_model is None:
            self.momentum_model = copy.deepcopy(model).requires_grad_(False)

    def embed(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        emb = dict(model(batch["inputs"], present=batch.get("present")))
        if self.momentum_model is not None:
            self.momentum_model.train(model.training)  # same dropout regime as the online model (ALBEF)
            inputs = {m: x for m, x in batch["inputs"].items() if m in self.modalities}
            with torch.no_grad():
                for m, z in self.momentum_model(inputs, present=batch.get("present")).items():
                    emb[f"{m}_momentum"] = z.detach()
        return emb

    def _queue(self, m: str, like: Tensor) -> tuple[Tensor, Tensor]:
        if not self._built or self.queue_size == 0:
            return like.new_zeros((0, like.shape[1])), torch.zeros(0, dtype=torch.long, device=like.device)
        return getattr(self, f"queue_{m}"), getattr(self, f"queue_ids_{m}")

    def _momentum(self, emb: Mapping[str, Tensor], m: str, keep: Tensor) -> Tensor | None:
        if f"{m}_momentum" not in emb:
            if self.needs_momentum:
                raise ValueError(
                    f"objective queue: emb lacks {m}_momentum (use QueueObjective.embed after attach)"
                )
            return None
        return emb[f"{m}_momentum"][keep]

    def _direction(self, emb, q: str, k: str, keep: Tensor, ids: Tensor, scale) -> Tensor:
        """ℓ(q→k) over the rows that carry both modalities."""
        queue, queue_ids = self._queue(k, emb[k])
        mom_q, mom_k = self._momentum(emb, q, keep), self._momentum(emb, k, keep)
        batch_keys = mom_k if self.batch_keys == "momentum" else emb[k][keep]
        return queue_loss(
            emb[q][keep], batch_keys, queue, ids, queue_ids, scale, self.distill_alpha, mom_q, mom_k
        )

    def forward(
        self,
        emb: Mapping[str, Tensor],
        *,
        present: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | float | None = None,
        batch: Mapping[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        scale = resolve_scale(logit_scale, self.temperature)
        ids = self._sample_ids(emb, batch)  # [B]
        terms: dict[str, Tensor] = {}
        for m, n in combinations(self.modalities, 2):
            keep = present_mask(present, m, emb[m]) & present_mask(present, n, emb[n])  # [B]
            if int(keep.sum()) < 2:
                continue
            terms[f"{m}_{n}_loss"] = 0.5 * (
                self._direction(emb, m, n, keep, ids[keep], scale)
                + self._direction(emb, n, m, keep, ids[keep], scale)
            )
            terms[f"{m}_{n}_acc"] = pair_accuracy(emb[m][keep], emb[n][keep])
        if self.training and self.queue_size > 0:
            for m in self.modalities:
                keep = present_mask(present, m, emb[m])
                self._pending.append((m, emb[f"{m}_momentum"][keep].detach(), ids[keep]))
        if self.queue_size > 0:
            terms["queue_fill"] = (getattr(self, f"queue_ids_{self.modalities[0]}") >= 0).float().mean()
        return terms

    def _sample_ids(self, emb: Mapping[str, Tensor], batch: Mapping[str, Any] | None) -> Tensor:
        like = emb[self.modalities[0]]
        if batch is not None and "sample_index" in batch:
            return torch.as_tensor(batch["sample_index"], device=like.device).long()
        if self.queue_size > 0:
            raise ValueError("objective queue: batch['sample_index'] is required with a non-empty queue")
        return torch.arange(like.shape[0], device=like.device)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """EMA update of the momentum copy, then enqueue the keys of the step's forward passes."""
        if self.momentum_model is not None:
            online = dict(model.named_parameters())
            for name, p_k in self.momentum_model.named_parameters():
                p_k.lerp_(online[name].detach(), 1.0 - self.momentum)  # θ_k ← m θ_k + (1 − m) θ_q
            online_buffers = dict(model.named_buffers())
            for name, b_k in self.momentum_model.named_buffers():
                b_k.copy_(online_buffers[name])  # running statistics follow the online model
        for m, keys, ids in self._pending:
            self._enqueue(m, gather_no_grad(keys), gather_no_grad(ids))
        self._pending.clear()

    def _enqueue(self, m: str, keys: Tensor, ids: Tensor) -> None:
        """FIFO write at the pointer, wrapping around (any batch size works, unlike MoCo's K % B == 0)."""
        queue, queue_ids, ptr = (getattr(self, f"{name}_{m}") for name in ("queue", "queue_ids", "queue_ptr"))
        n = min(keys.shape[0], self.queue_size)
        keys, ids = keys[keys.shape[0] - n :], ids[ids.shape[0] - n :]
        slots = (int(ptr) + torch.arange(n, device=queue.device)) % self.queue_size  # [n]
        queue[slots] = F.normalize(keys.to(queue.dtype), dim=-1)
        queue_ids[slots] = ids.to(queue_ids.device)
        ptr.fill_((int(ptr) + n) % self.queue_size)
