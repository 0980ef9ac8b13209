"""Centroid cosine distance: a descriptive drift figure (how far the mean direction moved), not a test.

It has no null distribution of its own here, so it never gates: a value of 0.01 may be noise at n = 50
and a real shift at n = 10,000. Read it beside the tests' p-values.
"""

from __future__ import annotations

import numpy as np


def centroid_cosine_distance(reference: np.ndarray, current: np.ndarray) -> dict:
    """1 - cos(mean of unit-normalised reference rows, mean of unit-normalised current rows).

    Args:
        reference: [N_ref, D] embeddings.
        current: [N_cur, D] embeddings in the same space.
    Returns:
        {"score": distance in [0, 2], "p_value": None, "drift_detected": None, ...}: descriptive only.
    """
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)  # [N_ref, D]
    cur = current / np.linalg.norm(current, axis=1, keepdims=True)  # [N_cur, D]
    mu_ref, mu_cur = ref.mean(axis=0), cur.mean(axis=0)  # [D], [D]
    denom = np.linalg.norm(mu_ref) * np.linalg.norm(mu_cur)
    cosine = float(mu_ref @ mu_cur / denom) if denom > 0 else 0.0
    return {
        "score": 1.0 - cosine,
        "score_name": "centroid_cosine_distance",
        "p_value": None,
        "drift_detected": None,
        "reference_centroid_norm": float(np.linalg.norm(mu_ref)),  # 1 = all rows point the same way
        "current_centroid_norm": float(np.linalg.norm(mu_cur)),
        "n_reference": len(reference),
        "n_current": len(current),
        "settings": {"descriptive": True},
    }
