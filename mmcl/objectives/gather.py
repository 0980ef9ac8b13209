"""Gathering embeddings across DDP ranks for contrastive losses (no-ops outside torch.distributed).

`gather_with_grad` is open_clip's `gather_features` recipe: all_gather the tensors, then put the local
tensor back in its slot so that gradients flow to this rank's embeddings (each rank then backprops
its own rows; the other ranks' rows are constants here and get their gradient on their own rank).

`global_batch` is what the objectives call: every rank computes the *same* loss on the global batch
(open_clip's `local_loss=False`). Why the full W·B × W·B matrix on every rank rather than local queries
against gathered keys: the objectives stay one function of the batch (masks, margins, teacher filters
and kernels need no per-rank slicing), and the similarity matrices are tiny next to the encoders. The
gradient identity (tests/deploy/test_ddp_gradients.py): rank r backprops ∂L/∂z_r through its own rows
only, and DDP averages over the W ranks, which would give (1/W)·∂L/∂θ; so the local slot's gradient is
scaled by W on the way back (what torch.distributed.nn.all_gather's backward sum does for identical
per-rank losses, without its extra collective). Parameters used directly by the loss (logit scale,
KDMCSE's caption projection on gathered teacher rows) already get the full ∂L on each rank, and the
average of W equal copies is that same value: no scaling there.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by `factor` on the way back."""

    @staticmethod
    def forward(ctx, z: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def gather_with_grad(z: Tensor, grad_scale: float = 1.0) -> Tensor:
    """Concatenation of every rank's z [B, ...] -> [world·B, ...]; gradients reach the local rows.

    All ranks must pass the same shape (drop_last batches, or DistributedSampler's equal shards).
    `grad_scale` multiplies the local rows' gradient (see the module docstring). Returns z itself
    when not distributed.
    """
    if not is_distributed():
        return z
    parts = [torch.zeros_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.detach().contiguous())
    parts[dist.get_rank()] = _ScaleGrad.apply(z, grad_scale) if grad_scale != 1.0 else z
    return torch.cat(parts, dim=0)


@torch.no_grad()
def _gather_equal(z: Tensor) -> Tensor:
    """Every rank's z [B, ...] (same shape on all ranks) -> [world·B, ...], no gradient; bool kept."""
    is_bool = z.dtype == torch.bool
    x = z.to(torch.uint8) if is_bool else z  # gloo has no bool all_gather
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    out = torch.cat(parts, dim=0)
    return out.bool() if is_bool else out


def global_batch(
    emb: Mapping[str, Tensor],
    present: Mapping[str, Tensor] | None = None,
    constants: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor] | None, dict[str, Tensor] | None]:
    """(embeddings, presence masks, constants) of the global batch, rows ordered rank 0, 1, ...

    Embeddings keep gradients to the local rows, scaled by the world size so that DDP's average
    equals the single-process gradient of the same loss on the concatenated batch. Presence masks and
    constants (teacher embeddings) come without gradients. Every rank must pass the same keys with
    the same shapes (keys are gathered in sorted order, so the collectives line up). Outside
    torch.distributed the inputs come back as they are.
    """
    if not is_distributed():
        return dict(emb), (dict(present) if present is not None else None), (
            dict(constants) if constants is not None else None
        )
    world = dist.get_world_size()
    out_emb = {k: gather_with_grad(emb[k], grad_scale=float(world)) for k in sorted(emb)}  # [W·B, D]
    out_present = {k: _gather_equal(present[k]) for k in sorted(present)} if present is not None else None
    out_const = {k: _gather_equal(constants[k]) for k in sorted(constants)} if constants is not None else None
    return out_emb, out_present, out_const


@torch.no_grad()
def gather_no_grad(z: Tensor) -> Tensor:
    """Concatenation of every rank's z [n_r, ...] (sizes may differ per rank), without gradients.

    Used for queue keys: with presence masks each rank may enqueue a different number of keys.
    """
    if not is_distributed():
        return z.detach()
    world = dist.get_world_size()
    n = torch.tensor([z.shape[0]], device=z.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *z.shape[1:]), dtype=z.dtype, device=z.device)
    padded[: z.shape[0]] = z
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)], dim=0)
