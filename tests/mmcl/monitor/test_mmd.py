"""MMD permutation test: the maths (vs Evidently's and a direct formula), calibration and power on real
MiniLM embeddings (Flickr8k captions vs SentEval MR sentences)."""

from __future__ import annotations

import numpy as np

from mmcl.monitor.mmd import (
    MmdSettings,
    median_bandwidth,
    mmd2_unbiased,
    mmd_permutation_test,
    squared_distances,
)

FAST = MmdSettings(n_permutations=200, max_samples=1000)


def _kernel(z):
    d2 = squared_distances(z)
    return np.exp(-d2 / (2 * median_bandwidth(d2)))


def test_unbiased_statistic_matches_direct_formula(text_sets):
    x, y = text_sets["captions"][:40].astype(np.float64), text_sets["mr"][:30].astype(np.float64)
    k = _kernel(np.vstack([x, y]))
    kxx, kyy, kxy = k[:40, :40], k[40:, 40:], k[:40, 40:]
    direct = (
        (kxx.sum() - np.trace(kxx)) / (40 * 39) + (kyy.sum() - np.trace(kyy)) / (30 * 29) - 2 * kxy.mean()
    )
    labels = np.r_[np.ones(40, bool), np.zeros(30, bool)]
    assert np.isclose(mmd2_unbiased(k, labels), direct, rtol=1e-10)
    # the batched form over many labellings equals one call per labelling
    rng = np.random.default_rng(1)
    perms = np.stack([rng.permutation(labels) for _ in range(7)], axis=1)  # [70, 7]
    batched = mmd2_unbiased(k, perms)
    assert np.allclose(batched, [mmd2_unbiased(k, perms[:, j]) for j in range(7)])


def test_same_as_evidentlys_mmd2u(text_sets):
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import MMD2u

    z = np.vstack([text_sets["captions"][:50], text_sets["mr"][:20]])
    k = _kernel(z)
    assert np.isclose(mmd2_unbiased(k, np.r_[np.ones(50, bool), np.zeros(20, bool)]), MMD2u(k, 50, 20))


def test_false_alarm_rate_on_same_distribution_splits(null_pair):
    """40 same-distribution splits of real caption embeddings: p < 0.05 at most 5 times
    (expected 2; P(>= 6 | calibrated) = 1.4%)."""
    rng = np.random.default_rng(0)
    p_values = []
    for i in range(40):
        ref, cur = null_pair(150, rng)
        p_values.append(mmd_permutation_test(ref, cur, settings=FAST, seed=i)["p_value"])
    p_values = np.array(p_values)
    assert (p_values < 0.05).sum() <= 5, p_values
    assert 0.3 < p_values.mean() < 0.7  # roughly uniform under H0, not piled up near 0


def test_detects_movie_reviews_mixed_into_captions(shifted_pair):
    ref, cur = shifted_pair(150, 0.25, np.random.default_rng(3))
    res = mmd_permutation_test(ref, cur, settings=FAST, seed=0)
    assert res["p_value"] < 0.01
    assert res["score"] > 0


def test_seeded_and_subsampled(text_sets):
    ref, cur = text_sets["captions"][:300], text_sets["captions"][300:]
    small = MmdSettings(n_permutations=100, max_samples=120)
    a = mmd_permutation_test(ref, cur, settings=small, seed=5)
    b = mmd_permutation_test(ref, cur, settings=small, seed=5)
    assert a["p_value"] == b["p_value"] and a["score"] == b["score"]
    assert (a["n_reference"], a["n_current"]) == (120, 120) and a["subsampled"]
    assert (a["n_reference_input"], a["n_current_input"]) == (300, 180)
