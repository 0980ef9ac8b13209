"""Model change is not data drift: compare old and new model embeddings of one fixed probe set.

Data drift asks "did the inputs move?" with the model held fixed; a new checkpoint moves every embedding
even on unchanged inputs, so a drift test between old-model reference and new-model current embeddings
would flag drift every time. Here the inputs are held fixed (the same probe rows, in the same order) and
the question is how similar the two representations are, up to the transformations that leave
cosine retrieval unchanged.

- Linear CKA (Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations
  Revisited", ICML 2019, eq. 6 with a linear kernel): invariant to rotation and isotropic scaling,
  widths may differ; 1 = same geometry.
- Orthogonal Procrustes (Schönemann 1966; as in scipy.spatial.procrustes): after centring and scaling
  both to unit Frobenius norm, the best rotation leaves disparity 1 - (sum of singular values of X'Y)^2.
- raw cosine (same width only): mean cos(old_i, new_i) without alignment; low means an index built with
  the old model cannot be queried with the new one (re-embed the corpus).
"""

from __future__ import annotations

import numpy as np

from mmcl.errors import UserError


def _centre(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)  # float32 Gram sums lose ~1e-7, visible in CKA of identical geometry
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between row-aligned representations x [N, D1] and y [N, D2], in [0, 1]."""
    x, y = _centre(x), _centre(y)
    # ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F): the D x D form costs O(N D^2), not O(N^2)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else 0.0


def procrustes_similarity(x: np.ndarray, y: np.ndarray) -> float:
    """Sum of singular values of X'Y after centring and unit Frobenius scaling, in [0, 1] (1 = a rotation)."""
    x, y = _centre(x), _centre(y)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    return float(np.linalg.svd(x.T @ y, compute_uv=False).sum())


def compare_models(old: np.ndarray, new: np.ndarray, *, seed: int = 0, n_shuffles: int = 5) -> dict:
    """Representation similarity of old vs new model on the same probe rows.

    Args:
        old: [N, D1] old-model embeddings of the probe set.
        new: [N, D2] new-model embeddings of the same rows, same order.
        seed: seeds the row shuffles of the chance baseline.
        n_shuffles: shuffles averaged for `cka_shuffled_baseline` (CKA of unrelated rows at this N, D).
    """
    if len(old) != len(new):
        raise UserError(
            f"model change compares the same probe rows: old has {len(old)} rows, new has {len(new)}"
        )
    rng = np.random.default_rng(seed)
    baseline = [linear_cka(old, new[rng.permutation(len(new))]) for _ in range(n_shuffles)]
    similarity = procrustes_similarity(old, new)
    result = {
        "linear_cka": linear_cka(old, new),
        "cka_shuffled_baseline": float(np.mean(baseline)),
        "procrustes_similarity": similarity,
        "procrustes_disparity": 1.0 - similarity**2,
        "n_probe": len(old),
        "dim_old": old.shape[1],
        "dim_new": new.shape[1],
        "raw_cosine_mean": None,
    }
    if old.shape[1] == new.shape[1]:
        cos = (old * new).sum(1) / (np.linalg.norm(old, axis=1) * np.linalg.norm(new, axis=1))  # [N]
        result["raw_cosine_mean"] = float(cos.mean())
    return result


def model_change_by_modality(old: dict[str, np.ndarray], new: dict[str, np.ndarray], *, seed: int = 0) -> dict:
    """`compare_models` per modality of one probe set embedded by the old and by the new champion.

    What a promotion records instead of a drift verdict: the reference embeddings are re-based on the new
    model (drift is only ever tested between embeddings of one model), and how far the representation moved
    is reported here, as a model change.
    """
    shared = sorted(set(old) & set(new))
    if not shared:
        raise UserError(f"model change: no modality embedded by both models (old {sorted(old)}, new {sorted(new)})")
    return {"kind": "model_change", "modalities": {m: compare_models(old[m], new[m], seed=seed) for m in shared}}
