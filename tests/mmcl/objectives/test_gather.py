"""DDP gathering helpers: identity outside torch.distributed, correct through a real 1-rank group."""

from __future__ import annotations

import torch
import torch.distributed as dist

from mmcl.objectives.gather import gather_no_grad, gather_with_grad, is_distributed


def test_no_process_group_is_identity():
    assert not is_distributed()
    z = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(z) is z
    assert torch.equal(gather_no_grad(z), z) and not gather_no_grad(z).requires_grad


def test_single_rank_gloo_group_keeps_gradients():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        z = torch.randn(3, 4, requires_grad=True)
        g = gather_with_grad(z)
        assert g.shape == (3, 4) and torch.equal(g, z)
        g.sum().backward()
        assert torch.equal(z.grad, torch.ones(3, 4))  # the local slot is the live tensor
        assert torch.equal(gather_no_grad(torch.arange(5)), torch.arange(5))
    finally:
        dist.destroy_process_group()
