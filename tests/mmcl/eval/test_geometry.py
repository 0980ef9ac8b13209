"""Alignment and uniformity (Wang & Isola) on hand-made cases and against their torch formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmcl.eval.geometry import alignment, uniformity


def test_alignment_hand_cases():
    e = np.eye(3)
    assert alignment(e, e) == 0.0
    assert alignment(e, -e) == pytest.approx(4.0)  # antipodal unit vectors: ||2x||^2
    assert alignment(e, np.roll(e, 1, axis=0)) == pytest.approx(2.0)  # orthogonal: ||x - y||^2 = 2
    assert alignment(e, np.roll(e, 1, axis=0), alpha=1) == pytest.approx(math.sqrt(2))


def test_uniformity_hand_cases():
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)  # one pair, d^2 = 4
    assert uniformity(np.tile([[0.0, 1.0]], (5, 1))) == pytest.approx(0.0)  # collapse
    # three orthonormal vectors: every pair at d^2 = 2 -> log exp(-4)
    assert uniformity(np.eye(3)) == pytest.approx(-4.0)


def test_matches_wang_isola_torch_code_and_chunking():
    import torch

    x = np.random.default_rng(0).normal(size=(257, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = x + 0.1 * np.random.default_rng(1).normal(size=x.shape)
    t, u = torch.tensor(x), torch.tensor(y)
    assert uniformity(x, chunk=10) == pytest.approx(
        torch.pdist(t, p=2).pow(2).mul(-2).exp().mean().log().item()
    )
    assert uniformity(x) == pytest.approx(uniformity(x, chunk=10))
    assert alignment(x, y) == pytest.approx((t - u).norm(p=2, dim=1).pow(2).mean().item())


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        uniformity(np.ones((1, 3)))
    with pytest.raises(ValueError):
        alignment(np.ones((2, 3)), np.ones((3, 3)))
