"""Multi-task: contrastive terms from a delegate objective plus β · CE of a linear head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcl.errors import ConfigError
from mmcl.objectives import build_objective, sum_losses


def test_terms_are_delegate_plus_beta_ce_on_labelled_rows(unit):
    torch.manual_seed(0)
    emb = {"image": unit(6, 4), "text": unit(6, 4)}
    labels = torch.tensor([0, 2, -1, 1, -1, 2])
    present = {
        "image": torch.tensor([True, True, True, True, True, False]),
        "text": torch.ones(6, dtype=torch.bool),
    }
    obj = build_objective(
        "multitask", num_classes=3, beta=0.5, embed_dim=4, contrastive_options={"temperature": 0.1}
    )
    terms = obj(emb, present=present, batch={"labels": labels})
    clip_terms = build_objective("clip", temperature=0.1)(emb, present=present)
    rows = torch.tensor([0, 1, 3])  # labelled and carrying an image
    want_ce = F.cross_entropy(obj.head(emb["image"][rows]), labels[rows])
    assert torch.allclose(terms["supervised_loss"], 0.5 * want_ce)
    assert torch.allclose(terms["image_text_loss"], clip_terms["image_text_loss"])
    assert torch.allclose(sum_losses(terms), clip_terms["image_text_loss"] + 0.5 * want_ce)


def test_unlabelled_batches_keep_the_head_in_the_graph(unit):
    emb = {"image": unit(4, 4), "text": unit(4, 4)}
    obj = build_objective("multitask", num_classes=2, embed_dim=4, contrastive_options={"temperature": 0.1})
    terms = obj(emb, batch={"labels": torch.full((4,), -1)})
    assert float(terms["supervised_loss"].detach()) == 0.0 and "supervised_acc" not in terms
    sum_losses(terms).backward()
    assert obj.head.weight.grad is not None  # zero gradient, but DDP sees the parameter used
    assert "supervised_loss" not in obj(emb, batch={})  # no labels at all: contrastive only


def test_delegates_hooks_and_learns_labels(tiny_model):
    torch.manual_seed(1)
    model = tiny_model()
    obj = build_objective(
        "multitask",
        num_classes=2,
        head_modality="image",
        contrastive="queue",
        contrastive_options={"queue_size": 8, "temperature": 0.1},
    )
    obj.attach(model)  # builds the head at model.embed_dim and the queue's momentum copy
    assert obj.head.in_features == model.embed_dim and obj.contrastive.momentum_model is not None
    x = torch.randn(32, 5)
    labels = (x[:, 0] > 0).long()
    batch = {
        "inputs": {"image": x, "text": torch.randn(32, 7)},
        "sample_index": torch.arange(32),
        "present": {"image": torch.ones(32, dtype=torch.bool), "text": torch.ones(32, dtype=torch.bool)},
        "labels": labels,
    }
    model.train()
    obj.train()
    opt = torch.optim.Adam(list(model.parameters()) + list(obj.head.parameters()), lr=0.05)
    for _ in range(25):
        terms = obj(obj.embed(model, batch), present=batch["present"], batch=batch)
        opt.zero_grad()
        sum_losses(terms).backward()
        opt.step()
        obj.after_step(model)
    assert float(terms["supervised_acc"]) > 0.9  # a linearly separable label is learnt through the head
    assert (obj.contrastive.queue_ids_text >= 0).all()  # after_step reached the delegate


def test_bad_options():
    with pytest.raises(ConfigError):
        build_objective("multitask", num_classes=1)
    with pytest.raises(KeyError, match="unknown objective"):
        build_objective("multitask", num_classes=3, contrastive="nope")
