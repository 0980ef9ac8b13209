"""Retrieval metrics against hand-computed values and a brute-force, count-based definition (ties included)."""

from __future__ import annotations

import numpy as np
import pytest

from mmcl.eval.retrieval import (
    bidirectional_retrieval_metrics,
    retrieval_metrics,
    retrieval_metrics_from_similarity,
)


def brute_force(sim, pos, ties="pessimistic", ks=(1, 5, 10)):
    """Per query, by counting: an item 'beats' a positive when it scores higher, or equal and the tie rule
    puts it first (pessimistic: every tied negative goes first; optimistic: none does)."""
    firsts, aps = [], []
    for s_row, p_row in zip(sim.tolist(), pos.tolist()):
        pos_scores = sorted((s for s, p in zip(s_row, p_row) if p), reverse=True)
        neg_scores = [s for s, p in zip(s_row, p_row) if not p]
        if not pos_scores:
            continue

        def negatives_before(score, neg_scores=neg_scores):
            if ties == "pessimistic":
                return sum(1 for n in neg_scores if n >= score)
            return sum(1 for n in neg_scores if n > score)

        positions = [j + negatives_before(score) for j, score in enumerate(pos_scores, start=1)]
        firsts.append(positions[0])
        aps.append(sum(j / position for j, position in enumerate(positions, start=1)) / len(positions))
    firsts = np.asarray(firsts, dtype=float)
    out = {f"R@{k}": 100.0 * float(np.mean(firsts <= k)) for k in ks}
    out["rsum"] = sum(out[f"R@{k}"] for k in ks)
    out.update(
        MAP=100.0 * float(np.mean(aps)),
        MRR=100.0 * float(np.mean(1.0 / firsts)),
        medR=float(np.median(firsts)),
        meanR=float(np.mean(firsts)),
        n_queries=len(firsts),
    )
    return out


def test_single_positive_below_a_negative():
    m = retrieval_metrics_from_similarity([[0.9, 0.5, 0.1]], [[False, True, False]])
    assert (m["R@1"], m["R@5"], m["MRR"], m["MAP"], m["medR"]) == (0.0, 100.0, 50.0, 50.0, 2.0)


def test_all_tied_is_worst_case_when_pessimistic_best_when_optimistic():
    sim, pos = [[0.5, 0.5, 0.5]], [[True, False, False]]
    pess = retrieval_metrics_from_similarity(sim, pos)
    opt = retrieval_metrics_from_similarity(sim, pos, ties="optimistic")
    assert (pess["medR"], pess["R@1"], pess["MAP"]) == (3.0, 0.0, pytest.approx(100 / 3))
    assert (opt["medR"], opt["R@1"], opt["MAP"]) == (1.0, 100.0, 100.0)


def test_several_positives_average_precision():
    # positives at positions 2 and 4: AP = (1/2 + 2/4) / 2
    m = retrieval_metrics_from_similarity([[0.9, 0.8, 0.7, 0.6]], [[False, True, False, True]])
    assert m["MAP"] == pytest.approx(50.0) and m["medR"] == 2.0 and m["MRR"] == pytest.approx(50.0)


def test_positives_tied_with_a_negative():
    # pessimistic order: neg(0.7), pos, pos, neg -> positions 2, 3; optimistic: 1, 2
    sim, pos = [[0.7, 0.7, 0.7, 0.2]], [[True, False, True, False]]
    assert retrieval_metrics_from_similarity(sim, pos)["MAP"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert retrieval_metrics_from_similarity(sim, pos, ties="optimistic")["MAP"] == pytest.approx(100.0)


def test_query_without_positive_is_left_out_and_counted():
    m = retrieval_metrics_from_similarity([[0.9, 0.1], [0.3, 0.2]], [[True, False], [False, False]])
    assert m["n_queries"] == 1 and m["n_queries_without_positive"] == 1 and m["R@1"] == 100.0
    with pytest.raises(ValueError, match="no query has a positive"):
        retrieval_metrics_from_similarity([[0.1]], [[False]])


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_tied_cases(seed, ties):
    rng = np.random.default_rng(seed)
    q, g = rng.integers(3, 12), rng.integers(4, 25)
    sim = rng.integers(0, 4, size=(q, g)).astype(float) / 3  # four levels: ties everywhere
    pos = rng.random((q, g)) < 0.25
    pos[0, rng.integers(g)] = True  # at least one query has a positive
    got = retrieval_metrics_from_similarity(sim, pos, ties=ties, chunk=2)  # chunking exercised too
    want = brute_force(sim, pos, ties)
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


def test_ids_convenience_both_directions():
    # two images (ids a, b) with two captions each; caption 3 is closer to image a than to its own image b
    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    captions = np.array([[1.0, 0.1], [0.9, 0.2], [0.2, 1.0], [1.0, 0.3]])
    cap_ids, img_ids = np.array(["a", "a", "b", "b"]), np.array(["a", "b"])
    t2i = retrieval_metrics(captions, images, cap_ids, img_ids)
    assert t2i["R@1"] == 75.0 and t2i["n_queries"] == 4
    both = bidirectional_retrieval_metrics(
        captions, images, cap_ids, img_ids, names=("text2image", "image2text")
    )
    assert both["text2image/R@1"] == 75.0
    sim = captions / np.linalg.norm(captions, axis=1, keepdims=True) @ images.T
    i2t = brute_force(sim.T, (cap_ids[:, None] == img_ids[None, :]).T)
    assert both["image2text/MAP"] == pytest.approx(i2t["MAP"]) and both["image2text/R@1"] == i2t["R@1"]
    assert both["rsum"] == pytest.approx(both["text2image/rsum"] + both["image2text/rsum"])


def test_accepts_torch_tensors_and_rejects_bad_shapes():
    import torch

    m = retrieval_metrics(torch.eye(3), torch.eye(3), torch.arange(3), torch.arange(3))
    assert m["R@1"] == 100.0 and m["MAP"] == 100.0
    with pytest.raises(ValueError, match="same"):
        retrieval_metrics_from_similarity(np.zeros((2, 3)), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="ids must match"):
        retrieval_metrics(np.eye(3), np.eye(3), np.arange(2), np.arange(3))
