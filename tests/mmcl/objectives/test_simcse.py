"""SimCSE: InfoNCE between two dropout views of the same text batch."""

from __future__ import annotations

import pytest
import torch

from mmcl.objectives import build_objective
from mmcl.objectives.clip import info_nce
from mmcl.objectives.simcse import simcse_loss


def _batch(b: int = 6, present=None):
    return {
        "inputs": {"text": torch.randn(b, 7)},
        "present": {"text": present if present is not None else torch.ones(b, dtype=torch.bool)},
    }


def test_embed_gives_two_dropout_views(tiny_model):
    torch.manual_seed(0)
    model, obj, batch = tiny_model(dropout=0.3), build_objective("simcse"), _batch()
    model.train()
    emb = obj.embed(model, batch)
    assert set(emb) == {"text", "text_view"} and not torch.allclose(emb["text"], emb["text_view"])
    assert torch.allclose(emb["text"].norm(dim=-1), torch.ones(6))
    model.eval()
    emb = obj.embed(model, batch)
    assert torch.allclose(emb["text"], emb["text_view"])  # no dropout, no augmentation


def test_loss_is_infonce_at_fixed_temperature(unit):
    torch.manual_seed(1)
    h, h2 = unit(9, 8), unit(9, 8)
    terms = build_objective("simcse")({"text": h, "text_view": h2}, logit_scale=torch.tensor(3.0))
    assert torch.allclose(
        terms["simcse_loss"], info_nce(h, h2, 1 / 0.05)
    )  # τ = 0.05 wins over the model's scale
    assert torch.allclose(simcse_loss(h, h2, 20.0), info_nce(h, h2, 20.0))


def test_rows_without_text_are_left_out(unit):
    torch.manual_seed(2)
    h, h2 = unit(5, 4), unit(5, 4)
    present = {"text": torch.tensor([True, True, False, True, False])}
    terms = build_objective("simcse")({"text": h, "text_view": h2}, present=present)
    assert torch.allclose(terms["simcse_loss"], info_nce(h[present["text"]], h2[present["text"]], 20.0))


def test_trains_end_to_end_and_needs_its_views(tiny_model):
    torch.manual_seed(3)
    model, obj = tiny_model(), build_objective("simcse")
    model.train()
    loss = obj(obj.embed(model, _batch()))["simcse_loss"]
    loss.backward()
    assert model.heads["text"].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="text_view"):
        obj({"text": torch.randn(3, 4)})
