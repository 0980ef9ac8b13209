"""Shared fixtures: random unit embeddings and a real MultiModalModel over tiny encoders."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcl.model import MultiModalModel


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: threads gain nothing, and on a busy 2-core box spinning OpenMP threads
    cost up to 10× the CPU time (measured on the Gaussian test: 28 s vs 2-3 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyEncoder(nn.Module):
    """A Linear + Dropout over a float feature vector: dropout makes two passes differ in train mode."""

    def __init__(self, in_dim: int, output_dim: int = 12, dropout: float = 0.1) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.net = nn.Sequential(nn.Linear(in_dim, output_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture
def unit():
    """unit(b, d, dtype=float32) -> b random unit vectors [b, d]."""

    def make(b: int, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return F.normalize(torch.randn(b, d, dtype=dtype), dim=-1)

    return make


@pytest.fixture
def tiny_model():
    """make(dims={"image": 5, "text": 7}, embed_dim=8) -> MultiModalModel over TinyEncoders (float inputs)."""

    def make(dims: dict[str, int] | None = None, embed_dim: int = 8, dropout: float = 0.1) -> MultiModalModel:
        dims = dims or {"image": 5, "text": 7}
        return MultiModalModel(
            {m: TinyEncoder(d, dropout=dropout) for m, d in dims.items()}, embed_dim=embed_dim
        )

    return make
