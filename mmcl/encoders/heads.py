"""Projection heads: map each encoder's width to the shared embedding width."""

from __future__ import annotations

from torch import nn


def build_head(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=False)
    if kind == "mlp":  # SimCLR-style: a hidden layer helps when the encoder is frozen
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim, bias=False))
    if kind == "none":
        if in_dim != out_dim:
            raise ValueError(f"head 'none' needs encoder width {in_dim} == embed_dim {out_dim}")
        return nn.Identity()
    raise ValueError(f"unknown head {kind!r} (linear, mlp, none)")
