"""Model change: CKA / Procrustes invariances, agreement with scipy, and a real change of pooling."""

from __future__ import annotations

import numpy as np
import pytest

from mmcl.errors import UserError
from mmcl.monitor.model_change import compare_models, linear_cka, procrustes_similarity


def test_rotation_and_scale_leave_the_representation_unchanged(text_sets):
    x = text_sets["captions"][:200]  # [200, 384]
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(384, 384)))  # random orthogonal
    res = compare_models(x, 3.0 * x @ q)
    assert res["linear_cka"] == pytest.approx(1.0, abs=1e-9)
    assert res["procrustes_similarity"] == pytest.approx(1.0, abs=1e-9)
    assert res["raw_cosine_mean"] < 0.2  # yet an old index could not be queried with the new vectors
    assert res["cka_shuffled_baseline"] < 0.5


def test_procrustes_disparity_matches_scipy(text_sets):
    from scipy.spatial import procrustes

    x = text_sets["captions"][:100, :50]
    y = x + 0.05 * np.random.default_rng(1).normal(size=x.shape)
    _, _, disparity = procrustes(x, y)
    assert 1 - procrustes_similarity(x, y) ** 2 == pytest.approx(disparity, rel=1e-8)
    assert linear_cka(x, y) < 1.0


def test_real_model_change_mean_vs_cls_pooling(text_sets):
    """Same MiniLM backbone, CLS pooling instead of the tuned mean pooling: a real new representation."""
    from mmcl.eval.embedders import load_text_embedder
    from mmcl.monitor.sources import load_mr_sentences, text_model_path

    probe = load_mr_sentences()[:150]
    old = load_text_embedder(str(text_model_path()), show_progress=False).encode(probe)
    new = load_text_embedder(str(text_model_path()), pooling="cls", show_progress=False).encode(probe)
    res = compare_models(old, new)
    assert res["cka_shuffled_baseline"] + 0.2 < res["linear_cka"] < 0.99
    same = compare_models(old, old)
    assert same["linear_cka"] == pytest.approx(1.0) and same["raw_cosine_mean"] == pytest.approx(1.0)


def test_rows_must_match():
    with pytest.raises(UserError, match="same probe rows"):
        compare_models(np.ones((10, 4)), np.ones((9, 4)))
