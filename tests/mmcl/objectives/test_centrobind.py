"""CentroBind: the centroid anchor, presence masks, single-modality samples, stop-gradient, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcl.objectives import build_objective, sum_losses
from mmcl.objectives.centrobind import centrobind_terms, centroid_anchor
from mmcl.objectives.clip import clip_loss, info_nce

MODS = ("audio", "image", "text")


@pytest.fixture
def batch(unit):
    torch.manual_seed(0)
    b = 10
    emb = {m: unit(b, 6, torch.float64) for m in MODS}
    present = {
        "audio": torch.tensor([1, 1, 1, 0, 0, 1, 1, 0, 1, 1], dtype=torch.bool),
        "image": torch.tensor([1, 1, 0, 1, 0, 1, 1, 1, 1, 0], dtype=torch.bool),
        "text": torch.tensor([1, 0, 1, 1, 1, 1, 0, 1, 1, 0], dtype=torch.bool),
    }  # row 4: text only; row 9: audio only
    return emb, present


def _reference(emb, present, scale, weights, min_present=1):
    """Loop version of METHODS.md §4, written independently of the implementation."""
    b = next(iter(emb.values())).shape[0]
    anchors, counts = [], []
    for i in range(b):
        have = [m for m in MODS if present[m][i]]
        total = sum(weights.get(m, 1.0) * emb[m][i] for m in have)
        anchors.append(F.normalize(total, dim=0))
        counts.append(len(have))
    a = torch.stack(anchors)
    loss = 0.0
    for m in MODS:
        rows = [i for i in range(b) if present[m][i] and counts[i] >= min_present]
        loss = loss + clip_loss(a[rows], emb[m][rows], scale)
    return loss


@pytest.mark.parametrize("weights", [{}, {"image": 3.0, "audio": 0.5}])
def test_matches_loop_reference_with_masks_and_weights(batch, weights):
    emb, present = batch
    obj = build_objective("centrobind", weights=weights or None, temperature=0.1)
    got = sum_losses(obj(emb, present=present))
    assert torch.allclose(got, _reference(emb, present, 10.0, weights))


def test_missing_entries_never_matter(batch):
    emb, present = batch
    base = sum_losses(centrobind_terms(emb, 10.0, present))
    poisoned = {
        m: torch.where(present[m][:, None], z, torch.full_like(z, float("nan"))) for m, z in emb.items()
    }
    assert torch.allclose(sum_losses(centrobind_terms(poisoned, 10.0, present)), base)


def test_single_modality_sample_anchor_is_itself_and_min_present_drops_it(batch):
    emb, present = batch
    anchor, count = centroid_anchor(emb, present)
    assert count[4] == 1 and torch.allclose(anchor[4], emb["text"][4])  # text-only row
    assert count[9] == 1 and torch.allclose(anchor[9], emb["audio"][9])  # audio-only row
    # min_present=2 is the same as removing those samples from the batch
    dropped = centrobind_terms(emb, 10.0, present, min_present=2)
    rows = [i for i in range(10) if i not in (4, 9)]
    removed = centrobind_terms(
        {m: z[rows] for m, z in emb.items()}, 10.0, {m: p[rows] for m, p in present.items()}
    )
    assert torch.allclose(sum_losses(dropped), sum_losses(removed))
    assert not torch.allclose(sum_losses(dropped), sum_losses(centrobind_terms(emb, 10.0, present)))


def test_all_samples_single_modality_is_self_contrast(unit):
    torch.manual_seed(1)
    z = unit(8, 5)
    terms = build_objective("centrobind", temperature=0.05)({"text": z})
    assert torch.allclose(terms["centrobind_text_loss"], info_nce(z, z, 20.0))


def test_single_modality_positive_has_no_gradient(unit):
    # its positive logit ⟨z, z⟩/τ is constant: the only gradient left is from its negatives
    torch.manual_seed(2)
    raw = unit(6, 4, torch.float64).requires_grad_()
    z = F.normalize(raw, dim=-1)  # embeddings are unit-norm functions of the parameters
    loss = centrobind_terms({"text": z}, 5.0)["centrobind_text_loss"]
    neg_only = torch.logsumexp(5.0 * z @ z.T, dim=1).mean()  # both directions of the term are identical
    assert torch.allclose(loss, neg_only - 5.0)  # positive logit is exactly 1/τ
    g, g_neg = (torch.autograd.grad(x, raw, retain_graph=True)[0] for x in (loss, neg_only))
    assert torch.allclose(g, g_neg)


def test_stop_gradient_cuts_the_anchor_path(batch):
    emb, present = batch
    text, image = emb["text"].clone().requires_grad_(), emb["image"].clone().requires_grad_()
    for stop, connected in ((True, False), (False, True)):
        terms = centrobind_terms({**emb, "text": text, "image": image}, 10.0, present, stop_gradient=stop)
        # the image term sees text only through the anchor
        g_text, g_image = torch.autograd.grad(
            terms["centrobind_image_loss"], [text, image], allow_unused=True
        )
        assert (g_text is not None and g_text.abs().sum() > 0) == connected
        assert g_image.abs().sum() > 0  # the image side of the term still learns
    anchor, _ = centroid_anchor(emb, present, stop_gradient=True)
    assert not anchor.requires_grad


def test_gradcheck_masked_weighted_centroid(batch):
    emb, present = batch
    raw = [emb[m][:6].clone().requires_grad_() for m in MODS]
    mask = {m: present[m][:6] for m in MODS}

    def f(*zs):
        e = {m: F.normalize(z, dim=-1) for m, z in zip(MODS, zs)}
        return sum_losses(centrobind_terms(e, 4.0, mask, weights={"image": 2.0}))

    assert torch.autograd.gradcheck(f, raw)
