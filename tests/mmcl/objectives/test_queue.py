"""Negative queue: size 0 = in-batch CLIP, sample-id positives, distillation, EMA, FIFO, checkpoints."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from mmcl.objectives import build_objective, sum_losses
from mmcl.objectives.clip import clip_loss, info_nce
from mmcl.objectives.queue import queue_loss


def test_queue_size_zero_is_the_in_batch_loss(unit):
    torch.manual_seed(0)
    emb = {"image": unit(10, 6), "text": unit(10, 6)}
    present = {"image": torch.tensor([True] * 8 + [False] * 2), "text": torch.ones(10, dtype=torch.bool)}
    scale = torch.tensor(14.0)
    got = build_objective("queue", queue_size=0)(
        emb, present=present, logit_scale=scale, batch={"sample_index": torch.arange(10)}
    )
    want = build_objective("clip")(emb, present=present, logit_scale=scale)
    assert torch.allclose(got["image_text_loss"], want["image_text_loss"], atol=1e-6)
    assert torch.allclose(
        got["image_text_loss"], clip_loss(emb["image"][:8], emb["text"][:8], scale), atol=1e-6
    )


def test_empty_slots_are_ignored(unit):
    torch.manual_seed(1)
    q, k = unit(5, 4), unit(5, 4)
    empty = torch.full((7,), -1)
    got = queue_loss(q, k, unit(7, 4), torch.arange(5), empty, 10.0)
    assert torch.allclose(got, info_nce(q, k, 10.0), atol=1e-6)


def test_queue_entry_with_the_query_id_is_a_positive(unit):
    torch.manual_seed(2)
    q, k, queue = unit(4, 3), unit(4, 3), unit(3, 3)
    ids = torch.tensor([10, 11, 12, 13])
    logits = 5.0 * q @ torch.cat([k, queue]).T  # [4, 7]
    logp = torch.log_softmax(logits, dim=1)
    # queue slot 1 holds an earlier caption of sample 10 (row 0's id): row 0 has two positives
    as_positive = queue_loss(q, k, queue, ids, torch.tensor([20, 10, 21]), 5.0)
    row0 = -0.5 * (logp[0, 0] + logp[0, 5])
    others = -torch.stack([logp[i, i] for i in (1, 2, 3)])
    assert torch.allclose(as_positive, (row0 + others.sum()) / 4, atol=1e-6)
    # the same entry under a foreign id is just one more negative
    as_negative = queue_loss(q, k, queue, ids, torch.tensor([20, 22, 21]), 5.0)
    assert torch.allclose(as_negative, -torch.stack([logp[i, i] for i in range(4)]).mean(), atol=1e-6)
    assert as_positive != as_negative


def test_momentum_distillation_targets(unit):
    torch.manual_seed(3)
    q, k, queue, mq, mk = unit(4, 3), unit(4, 3), unit(2, 3), unit(4, 3), unit(4, 3)
    ids, qids = torch.arange(4), torch.tensor([7, 8])
    logp = torch.log_softmax(6.0 * q @ torch.cat([k, queue]).T, dim=1)
    soft = torch.softmax(6.0 * mq @ torch.cat([mk, queue]).T, dim=1)
    targets = 0.4 * soft + 0.6 * F.one_hot(ids, 6).float()
    got = queue_loss(q, k, queue, ids, qids, 6.0, alpha=0.4, momentum_query=mq, momentum_keys=mk)
    assert torch.allclose(got, -(targets * logp).sum(1).mean(), atol=1e-6)


def _batch(b, start):
    return {
        "inputs": {"image": torch.randn(b, 5), "text": torch.randn(b, 7)},
        "present": {"image": torch.ones(b, dtype=torch.bool), "text": torch.ones(b, dtype=torch.bool)},
        "sample_index": torch.arange(start, start + b),
    }


def _step(model, obj, opt, batch):
    emb = obj.embed(model, batch)
    loss = sum_losses(obj(emb, present=batch["present"], logit_scale=model.logit_scale.exp(), batch=batch))
    opt.zero_grad()
    loss.backward()
    opt.step()
    obj.after_step(model)


def test_momentum_copy_ema_and_fifo_queue(tiny_model):
    torch.manual_seed(4)
    model = tiny_model()
    obj = build_objective("queue", queue_size=10, momentum=0.9)
    obj.attach(model)
    assert obj.momentum_model is not model
    assert all(not p.requires_grad for p in obj.momentum_model.parameters())
    model.train()
    obj.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = {n: p.detach().clone() for n, p in obj.momentum_model.named_parameters()}
    _step(model, obj, opt, _batch(6, start=100))
    for n, p in model.named_parameters():  # θ_k ← m θ_k + (1 − m) θ_q
        assert torch.allclose(
            dict(obj.momentum_model.named_parameters())[n], 0.9 * before[n] + 0.1 * p.detach(), atol=1e-6
        )
    assert obj.queue_ids_text[:6].tolist() == list(range(100, 106)) and int(obj.queue_ptr_text) == 6
    assert torch.allclose(obj.queue_text[:6].norm(dim=-1), torch.ones(6))
    _step(model, obj, opt, _batch(6, start=200))  # wraps: slots 6..9 then 0..1
    assert obj.queue_ids_image.tolist() == [204, 205, 102, 103, 104, 105, 200, 201, 202, 203]
    assert int(obj.queue_ptr_image) == 2


def test_evaluation_does_not_enqueue_and_sample_ids_are_required(tiny_model):
    torch.manual_seed(5)
    model = tiny_model()
    obj = build_objective("queue", queue_size=8)
    obj.attach(model)
    model.eval()
    obj.eval()
    batch = _batch(4, start=0)
    obj(obj.embed(model, batch), present=batch["present"], logit_scale=10.0, batch=batch)
    obj.after_step(model)
    assert (obj.queue_ids_text == -1).all()
    with pytest.raises(ValueError, match="sample_index"):
        obj(obj.embed(model, batch), logit_scale=10.0, batch={})


def test_queue_and_momentum_copy_survive_a_checkpoint(tiny_model):
    torch.manual_seed(6)
    model = tiny_model()
    obj = build_objective("queue", queue_size=8, momentum=0.5)
    obj.attach(model)
    model.train()
    obj.train()
    _step(model, obj, torch.optim.SGD(model.parameters(), lr=0.1), _batch(5, start=40))
    buf = io.BytesIO()
    torch.save(obj.state_dict(), buf)
    assert {"queue_text", "queue_ids_text", "queue_ptr_text"} <= set(obj.state_dict())
    assert any(k.startswith("momentum_model.") for k in obj.state_dict())
    fresh = build_objective("queue", queue_size=8, momentum=0.5)
    fresh.attach(tiny_model())
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh.queue_text, obj.queue_text) and torch.equal(
        fresh.queue_ids_image, obj.queue_ids_image
    )
    assert int(fresh.queue_ptr_text) == 5


def test_gradcheck_masked_multi_positive_loss(unit):
    torch.manual_seed(7)
    raw_q, raw_k = unit(4, 3, torch.float64).requires_grad_(), unit(4, 3, torch.float64).requires_grad_()
    queue = unit(5, 3, torch.float64)
    queue_ids = torch.tensor([1, -1, 9, 3, -1])  # two empty slots, two positives (ids 1 and 3)

    def f(a, b):
        return queue_loss(
            F.normalize(a, dim=-1), F.normalize(b, dim=-1), queue, torch.arange(4), queue_ids, 3.0
        )

    assert torch.autograd.gradcheck(f, (raw_q, raw_k))
