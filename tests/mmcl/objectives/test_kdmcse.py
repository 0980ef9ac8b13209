"""KDMCSE: reduces to SimCSE/MCSE, margin and filter by hand, gradients, text-only batches, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmcl.objectives import build_objective, sum_losses
from mmcl.objectives.clip import info_nce
from mmcl.objectives.kdmcse import adaptive_margin, angular_margin_cos, margin_nce
from mmcl.objectives.simcse import simcse_loss


def _emb(unit, b=8, d=6, image=True):
    emb = {"text": unit(b, d), "text_view": unit(b, d)}
    if image:
        emb["image"] = unit(b, d)
    return emb


def _teacher(unit, b=8, dt=384, di=10):
    return {"text": unit(b, dt), "image": unit(b, di)}


def test_no_margin_no_filter_no_lambda_is_simcse(unit):
    torch.manual_seed(0)
    emb = _emb(unit)
    obj = build_objective("kdmcse", margin1=0.0, margin2=0.0, threshold=1.5, lambda_weight=0.0, embed_dim=6)
    terms = obj(emb, batch={"teacher": _teacher(unit)})
    assert set(terms) == {"kdmcse_text_loss", "kdmcse_text_acc"}
    assert torch.allclose(
        terms["kdmcse_text_loss"], simcse_loss(emb["text"], emb["text_view"], 1 / 0.05), atol=1e-6
    )


def test_mcse_is_simcse_plus_lambda_text_to_image(unit):
    torch.manual_seed(1)
    emb = _emb(unit)
    terms = build_objective("mcse", lambda_weight=0.3)(emb)
    want = (
        0.3
        * 0.5
        * (info_nce(emb["text"], emb["image"], 20.0) + info_nce(emb["text_view"], emb["image"], 20.0))
    )
    assert torch.allclose(terms["kdmcse_image_loss"], want, atol=1e-6)
    assert torch.allclose(
        sum_losses(terms), simcse_loss(emb["text"], emb["text_view"], 20.0) + want, atol=1e-6
    )


def test_angular_margin_by_hand():
    theta = torch.tensor([[0.0, 1.0, 0.1], [1.0, 0.3, 2.0], [0.05, 0.9, 0.2]], dtype=torch.float64)
    got = angular_margin_cos(torch.cos(theta), 0.15)
    want = torch.cos(theta).clone()
    for i in range(3):
        for j in range(3):
            if i != j and theta[i, j] > 0.15:  # negatives beyond the margin move closer by m
                want[i, j] = math.cos(theta[i, j] - 0.15)
    assert torch.allclose(got, want)
    assert torch.allclose(got.diagonal(), torch.cos(theta).diagonal())  # positives untouched


def test_adaptive_margin_and_filter_by_hand(unit):
    torch.manual_seed(2)
    q, k = unit(4, 5, torch.float64), unit(4, 5, torch.float64)
    alpha = torch.eye(4, dtype=torch.float64) + 0.1
    alpha[0, 2] = 0.9  # a teacher near-duplicate: filtered out of row 0's denominator
    margin = adaptive_margin(alpha, 0.15)
    assert torch.allclose(margin[1, 3], torch.tensor(0.15 * 0.9, dtype=torch.float64))
    got = margin_nce(q, k, 0.05, margin, alpha, threshold=0.8)
    cos = angular_margin_cos(q @ k.T, margin) / 0.05
    rows = []
    for i in range(4):
        cols = [j for j in range(4) if j == i or alpha[i, j] < 0.8]
        rows.append(torch.logsumexp(cos[i, cols], 0) - cos[i, i])
    assert torch.allclose(got, torch.stack(rows).mean())
    assert not torch.allclose(got, margin_nce(q, k, 0.05, margin, alpha, threshold=None))


def test_gradcheck_margin_filter(unit):
    torch.manual_seed(3)
    raw_q = unit(5, 4, torch.float64).requires_grad_()
    raw_k = unit(5, 4, torch.float64).requires_grad_()
    alpha = torch.rand(5, 5, dtype=torch.float64)

    def f(a, b):
        qa, kb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return margin_nce(qa, kb, 0.1, adaptive_margin(alpha, 0.4), alpha, threshold=0.7) + margin_nce(
            qa, kb, 0.1, 0.3
        )

    assert torch.autograd.gradcheck(f, (raw_q, raw_k))


def test_text_only_rows_get_the_text_term_only(unit):
    torch.manual_seed(4)
    emb, teacher = _emb(unit), _teacher(unit)
    obj = build_objective("kdmcse", embed_dim=6)
    none = {"text": torch.ones(8, dtype=torch.bool), "image": torch.zeros(8, dtype=torch.bool)}
    assert set(obj(emb, present=none, batch={"teacher": teacher})) == {"kdmcse_text_loss", "kdmcse_text_acc"}
    assert set(obj({k: emb[k] for k in ("text", "text_view")})) == {"kdmcse_text_loss", "kdmcse_text_acc"}
    # a mixed batch: the cross-modal terms use the paired rows only
    some = {"text": none["text"], "image": torch.tensor([True] * 5 + [False] * 3)}
    mixed = obj(emb, present=some, batch={"teacher": teacher})
    rows = some["image"]
    paired = obj(
        {k: v[rows] for k, v in emb.items()}, batch={"teacher": {k: v[rows] for k, v in teacher.items()}}
    )
    for key in ("kdmcse_image_loss", "kdmcse_caption_loss"):
        assert torch.allclose(mixed[key], paired[key])


def test_paired_rows_without_teacher_fail_clearly(unit):
    obj = build_objective("kdmcse", embed_dim=6)
    with pytest.raises(ValueError, match="teacher"):
        obj(_emb(unit))


def test_trains_end_to_end_with_teacher(tiny_model, unit):
    torch.manual_seed(5)
    model = tiny_model(embed_dim=6)
    obj = build_objective("kdmcse")
    obj.attach(model)  # builds the caption projection at model.embed_dim
    model.train()
    batch = {
        "inputs": {"text": torch.randn(8, 7), "image": torch.randn(8, 5)},
        "present": {"text": torch.ones(8, dtype=torch.bool), "image": torch.ones(8, dtype=torch.bool)},
        "teacher": _teacher(unit),
    }
    emb = obj.embed(model, batch)
    assert set(emb) == {"text", "text_view", "image"}
    terms = obj(emb, present=batch["present"], batch=batch)
    assert {"kdmcse_text_loss", "kdmcse_image_loss", "kdmcse_caption_loss"} <= set(terms)
    sum_losses(terms).backward()
    assert obj.caption_proj[0].weight.grad.abs().sum() > 0
    assert model.heads["image"].weight.grad.abs().sum() > 0
