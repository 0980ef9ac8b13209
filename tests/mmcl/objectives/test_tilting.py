"""Tilting family: the CLIP identity, conditional ≤ joint, the one-sided weights, the MMD forms."""

from __future__ import annotations

import math

import pytest
import torch

from mmcl.errors import ConfigError
from mmcl.objectives import build_objective
from mmcl.objectives.clip import clip_loss, info_nce
from mmcl.objectives.tilting import (
    conditional_loss,
    gaussian_kernel,
    joint_loss,
    mmd_conditional_loss,
    mmd_joint_loss,
    tilt_matrix,
    tilting_loss,
    weighted_conditional_loss,
)


def test_clip_equals_conditional_plus_log_b(unit):
    torch.manual_seed(0)
    for b, d, tau in [(2, 3, 1.0), (8, 16, 0.07), (33, 5, 0.5), (64, 32, 0.01)]:
        u, v = unit(b, d), unit(b, d)
        cond = conditional_loss(tilt_matrix(u, v, "cosine"), tau)
        assert torch.allclose(clip_loss(u, v, 1 / tau), cond + math.log(b), atol=1e-5), (b, d, tau)


def test_objective_with_logit_scale_matches_clip_objective(unit):
    torch.manual_seed(1)
    emb = {"image": unit(16, 8), "text": unit(16, 8)}
    scale = torch.tensor(14.3)
    tilt = build_objective("tilting", loss="conditional")(emb, logit_scale=scale)
    clip = build_objective("clip")(emb, logit_scale=scale)
    assert torch.allclose(tilt["image_text_loss"] + math.log(16), clip["image_text_loss"], atol=1e-5)


def test_conditional_at_most_joint_all_pairs_on_every_draw(unit):
    # Jensen: E_j log E_i e^{L_ij} ≤ log E_ij e^{L_ij}; must hold for any batch, aligned or not
    torch.manual_seed(2)
    for trial in range(300):
        b, d = int(torch.randint(2, 40, ())), int(torch.randint(2, 32, ()))
        u = unit(b, d, torch.float64)
        v = u + 0.3 * torch.randn(b, d, dtype=torch.float64) if trial % 2 else unit(b, d, torch.float64)
        tau = float(torch.empty(()).uniform_(0.02, 2.0))
        for tilt in ("cosine", "dot", "neg_sq_l2"):
            s = tilt_matrix(u, v, tilt)
            assert conditional_loss(s, tau) <= joint_loss(s, tau, "all") + 1e-12, (trial, tilt)


def test_off_diagonal_joint_is_not_an_upper_bound_when_pairs_dominate():
    # documented caveat: with only shuffled pairs in the normaliser, aligned pairs break the bound
    s = torch.eye(4, dtype=torch.float64)  # paired cosine 1, unpaired 0
    assert joint_loss(s, 0.1, "off_diagonal") < conditional_loss(s, 0.1)
    assert conditional_loss(s, 0.1) <= joint_loss(s, 0.1, "all")


def test_weighted_loss_special_cases(unit):
    torch.manual_seed(3)
    u, v, tau = unit(12, 6), unit(12, 6), 0.2
    s = tilt_matrix(u, v)
    assert torch.allclose(weighted_conditional_loss(s, tau, 1.0, 1.0), conditional_loss(s, tau))
    # (λ_u, λ_v) = (2, 0) fits u|v only: NCE(v→u) − log B
    assert torch.allclose(
        weighted_conditional_loss(s, tau, 2.0, 0.0), info_nce(v, u, 1 / tau) - math.log(12), atol=1e-6
    )
    assert torch.allclose(
        weighted_conditional_loss(s, tau, 0.0, 2.0), info_nce(u, v, 1 / tau) - math.log(12), atol=1e-6
    )


def test_tilts_definitions():
    gu = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    gv = torch.tensor([[0.0, 2.0]])
    assert torch.allclose(tilt_matrix(gu, gv, "dot"), torch.tensor([[8.0], [0.0]]))
    assert torch.allclose(tilt_matrix(gu, gv, "cosine"), torch.tensor([[0.8], [0.0]]))
    assert torch.allclose(tilt_matrix(gu, gv, "neg_sq_l2"), torch.tensor([[-(9 + 4) / 2], [-(1 + 4) / 2]]))


def _mmd_joint_by_loops(s, tau, ku, kv):
    b = s.shape[0]
    w = torch.softmax((s / tau).reshape(-1), 0).reshape(b, b)
    dd = sum(ku[i, k] * kv[i, k] for i in range(b) for k in range(b)) / b**2
    dm = sum(w[i, j] * ku[a, i] * kv[a, j] for a in range(b) for i in range(b) for j in range(b)) / b
    mm = sum(
        w[i, j] * w[k, l] * ku[i, k] * kv[j, l]
        for i in range(b)
        for j in range(b)
        for k in range(b)
        for l in range(b)  # noqa: E741
    )
    return dd - 2 * dm + mm


def test_mmd_joint_matches_its_definition(unit):
    torch.manual_seed(4)
    u, v = unit(4, 3, torch.float64), unit(4, 3, torch.float64)
    s, ku, kv = tilt_matrix(u, v), gaussian_kernel(u, 0.7), gaussian_kernel(v, 0.7)
    assert torch.allclose(mmd_joint_loss(s, 0.3, ku, kv), _mmd_joint_by_loops(s, 0.3, ku, kv))
    assert mmd_joint_loss(s, 0.3, ku, kv) >= -1e-12  # an MMD² with a PSD product kernel


def test_mmd_conditional_matches_kernel_score_and_is_minimised_by_the_truth():
    torch.manual_seed(5)
    b = 5
    x = torch.randn(b, 2, dtype=torch.float64)
    ku = kv = gaussian_kernel(x, 1.0)
    # column j of softmax(L, dim=0) is ν̂(u | v_j): a score of MMD² to δ_{u_j}
    s = torch.randn(b, b, dtype=torch.float64)
    pu, pv = torch.softmax(s, 0), torch.softmax(s, 1)
    want_u = torch.stack(
        [ku[j, j] - 2 * pu[:, j] @ ku[:, j] + pu[:, j] @ ku @ pu[:, j] for j in range(b)]
    ).mean()
    want_v = torch.stack([kv[i, i] - 2 * pv[i] @ kv[:, i] + pv[i] @ kv @ pv[i] for i in range(b)]).mean()
    assert torch.allclose(mmd_conditional_loss(s, 1.0, ku, kv), 0.5 * want_u + 0.5 * want_v)
    # a tilt concentrated on the true partners drives the score to ~0
    assert mmd_conditional_loss(100.0 * torch.eye(b, dtype=torch.float64), 1.0, ku, kv) < 1e-10


def test_mmd_gradients_flow_through_the_tilt_only(unit):
    torch.manual_seed(6)
    u, v = unit(6, 4).requires_grad_(), unit(6, 4).requires_grad_()
    for loss in ("mmd_joint", "mmd_conditional"):
        out = tilting_loss(u, v, 0.1, loss, "cosine")
        (gu,) = torch.autograd.grad(out, u)
        assert torch.isfinite(gu).all() and gu.abs().sum() > 0


def test_every_loss_and_tilt_runs_through_the_objective_with_masks(unit):
    torch.manual_seed(7)
    emb = {"image": unit(10, 4), "text": unit(10, 4)}
    present = {"image": torch.tensor([True] * 8 + [False] * 2), "text": torch.ones(10, dtype=torch.bool)}
    for loss in ("conditional", "weighted", "joint", "mmd_joint", "mmd_conditional"):
        for tilt in ("cosine", "dot", "neg_sq_l2"):
            obj = build_objective(
                "tilting", loss=loss, tilt=tilt, temperature=0.1, lambda_u=1.5, lambda_v=0.5
            )
            terms = obj(emb, present=present)
            direct = tilting_loss(emb["image"][:8], emb["text"][:8], 0.1, loss, tilt, 1.5, 0.5)
            assert torch.allclose(terms["image_text_loss"], direct), (loss, tilt)


def test_bad_options_name_the_key():
    with pytest.raises(ConfigError, match="tilt"):
        build_objective("tilting", tilt="manhattan")
    with pytest.raises(ConfigError, match="loss"):
        build_objective("tilting", loss="nope")
