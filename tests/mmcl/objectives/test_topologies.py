"""FABind and full graph: sums of pairwise CLIP terms over the right pairs, with presence masks."""

from __future__ import annotations

import pytest
import torch

from mmcl.errors import ConfigError
from mmcl.objectives import build_objective, sum_losses
from mmcl.objectives.clip import clip_loss


@pytest.fixture
def three_modalities(unit):
    torch.manual_seed(0)
    b = 12
    emb = {m: unit(b, 8) for m in ("audio", "image", "text")}
    present = {
        "audio": torch.tensor([True] * 6 + [False] * 6),
        "image": torch.ones(b, dtype=torch.bool),
        "text": torch.tensor([True, False] * 6),
    }
    return emb, present


def _pair(emb, present, m, n, scale):
    keep = present[m] & present[n]
    return clip_loss(emb[m][keep], emb[n][keep], scale)


@pytest.mark.parametrize("anchor", ["image", "text", "audio"])
def test_fabind_is_sum_of_clip_losses_with_the_anchor(three_modalities, anchor):
    emb, present = three_modalities
    scale = 1 / 0.07
    terms = build_objective("fabind", anchor=anchor, temperature=0.07)(emb, present=present)
    others = [m for m in sorted(emb) if m != anchor]
    want = sum(_pair(emb, present, anchor, m, scale) for m in others)
    assert torch.allclose(sum_losses(terms), want, atol=1e-6)
    assert sorted(k for k in terms if k.endswith("_loss")) == sorted(f"{anchor}_{m}_loss" for m in others)


def test_fullgraph_is_sum_over_all_pairs(three_modalities):
    emb, present = three_modalities
    scale = torch.tensor(12.0)
    terms = build_objective("fullgraph")(emb, present=present, logit_scale=scale)
    want = sum(
        _pair(emb, present, m, n, scale)
        for m, n in [("audio", "image"), ("audio", "text"), ("image", "text")]
    )
    assert torch.allclose(sum_losses(terms), want, atol=1e-6)


def test_fullgraph_equals_fabind_plus_the_non_anchor_pair(three_modalities):
    emb, present = three_modalities
    full = sum_losses(build_objective("fullgraph", temperature=0.1)(emb, present=present))
    fab = sum_losses(build_objective("fabind", anchor="image", temperature=0.1)(emb, present=present))
    assert torch.allclose(full, fab + _pair(emb, present, "audio", "text", 10.0), atol=1e-6)


def test_pair_with_fewer_than_two_common_samples_is_skipped(unit):
    emb = {"image": unit(4, 3), "text": unit(4, 3)}
    present = {"image": torch.tensor([True, False, False, False]), "text": torch.ones(4, dtype=torch.bool)}
    assert build_objective("fabind", anchor="image", temperature=0.1)(emb, present=present) == {}


def test_fabind_unknown_anchor_is_a_config_error(unit):
    with pytest.raises(ConfigError, match="anchor"):
        build_objective("fabind", anchor="video", temperature=0.1)({"image": unit(3, 2), "text": unit(3, 2)})
