"""Two-sample MMD test with a Gaussian kernel and a pooled permutation null.

Why pooled permutations: under H0 (same distribution) the reference/current labels are exchangeable, so
re-drawing the labels over the *pooled* sample gives the exact null distribution of the statistic at the
observed sample sizes. Resampling the reference alone (what Evidently's `mmd(bootstrap=True)` does)
ignores the current set's own variability and a different bandwidth, and flags drift on no-drift data.
The bandwidth comes from the pooled sample too, so it is the same for every permutation (the test stays
exact).

Cost: the kernel matrix is O(N^2) in memory and time and every permutation is a matrix-vector product
over it, so each side is subsampled to at most `max_samples` rows (default 1000; N = 2000 pooled) before
testing; the result records the sizes used.

Reference: Gretton, Borgwardt, Rasch, Schölkopf, Smola, "A Kernel Two-Sample Test", JMLR 13 (2012):
unbiased MMD^2_u (eq. 3) and the median heuristic for the bandwidth.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

# Each side is subsampled to this many rows: kernel matrix (2*1000)^2 float64 = 32 MB, ~1 s for 500
# permutations on 2 cores. Above HARD_CAP the O(N^2) memory (>= 800 MB) is refused outright.
DEFAULT_MAX_SAMPLES = 1000
HARD_CAP = 5000


@dataclass(frozen=True)
class MmdSettings:
    """Settings of the MMD permutation test (all recorded in the result)."""

    n_permutations: int = 500  # p-value resolution 1/501; alpha = 0.05 needs >= ~200
    max_samples: int = DEFAULT_MAX_SAMPLES  # per side, after which rows are subsampled without replacement
    chunk: int = 100  # permutations per matrix product: bounds memory at N * chunk floats


def subsample(x: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """At most `max_rows` rows of x, drawn without replacement (all rows, in order, when fewer)."""
    if len(x) <= max_rows:
        return x
    return x[np.sort(rng.choice(len(x), size=max_rows, replace=False))]


def squared_distances(z: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances [N, N] (clipped at 0 against round-off)."""
    sq = (z * z).sum(axis=1)  # [N]
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)  # [N, N]
    np.fill_diagonal(d2, 0.0)
    return np.maximum(d2, 0.0)


def median_bandwidth(d2: np.ndarray) -> float:
    """sigma^2 = median of the off-diagonal pooled squared distances (median heuristic)."""
    upper = d2[np.triu_indices_from(d2, k=1)]
    sigma2 = float(np.median(upper))
    if sigma2 <= 0.0:  # more than half the pairs are duplicates: fall back to the mean positive distance
        positive = upper[upper > 0]
        sigma2 = float(positive.mean()) if positive.size else 1.0
    return sigma2


def mmd2_unbiased(kernel: np.ndarray, is_ref: np.ndarray) -> np.ndarray:
    """MMD^2_u for one or more labellings of the pooled sample.

    Args:
        kernel: pooled kernel matrix K [N, N] with unit diagonal (Gaussian kernel).
        is_ref: Bool/0-1 [N] or [N, P]: column p marks the rows labelled "reference" in labelling p.
    Returns:
        MMD^2_u per labelling, shape [] or [P]. One matrix product serves all P labellings: with u the
        reference indicator, s_xx = u'Ku, s_xy = 1'Ku - s_xx, s_yy = 1'K1 - s_xx - 2 s_xy.
    """
    u = is_ref.astype(np.float64)  # [N] or [N, P]
    m = u.sum(axis=0)
    n = kernel.shape[0] - m
    ku = kernel @ u  # [N] or [N, P]
    s_xx = (u * ku).sum(axis=0)
    s_xy = ku.sum(axis=0) - s_xx
    s_yy = kernel.sum() - s_xx - 2.0 * s_xy
    # diagonal terms k(x, x) = 1 are excluded from the within-set sums (unbiased U-statistic)
    return (s_xx - m) / (m * (m - 1)) + (s_yy - n) / (n * (n - 1)) - 2.0 * s_xy / (m * n)


def mmd_permutation_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    settings: MmdSettings = MmdSettings(),
    seed: int = 0,
) -> dict:
    """MMD^2_u of reference vs current and its pooled-permutation p-value.

    Args:
        reference: [N_ref, D] embeddings (already validated and, if wanted, L2-normalised).
        current: [N_cur, D] embeddings in the same space.
        settings: permutations, per-side subsample cap, chunk size.
        seed: seeds the subsampling and the permutations (same seed -> same result).
    Returns:
        {"score": MMD^2_u, "p_value", "bandwidth_sigma2", "n_reference", "n_current", "settings", ...};
        p = (1 + #{perm stat >= observed}) / (1 + P), which is exact under exchangeability.
    """
    if settings.max_samples > HARD_CAP:
        raise ValueError(f"max_samples {settings.max_samples} > {HARD_CAP}: the O(n^2) kernel would not fit")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    ref = subsample(reference, settings.max_samples, rng)  # [m, D]
    cur = subsample(current, settings.max_samples, rng)  # [n, D]
    z = np.vstack([ref, cur]).astype(np.float64)  # [N, D]; float32 sums would blur close permutations
    d2 = squared_distances(z)  # [N, N]
    sigma2 = median_bandwidth(d2)
    kernel = np.exp(-d2 / (2.0 * sigma2))  # [N, N]
    del d2
    labels = np.zeros(len(z), dtype=bool)
    labels[: len(ref)] = True
    observed = float(mmd2_unbiased(kernel, labels))
    exceed, done = 0, 0
    while done < settings.n_permutations:
        size = min(settings.chunk, settings.n_permutations - done)
        perm = np.stack([rng.permutation(labels) for _ in range(size)], axis=1)  # [N, size]
        exceed += int((mmd2_unbiased(kernel, perm) >= observed).sum())
        done += size
    return {
        "score": observed,
        "score_name": "mmd2_unbiased",
        "p_value": (1 + exceed) / (1 + settings.n_permutations),
        "bandwidth_sigma2": sigma2,
        "kernel": "gaussian exp(-||x-y||^2 / (2 sigma^2)), sigma^2 = median pooled squared distance",
        "n_reference": len(ref),
        "n_current": len(cur),
        "n_reference_input": len(reference),
        "n_current_input": len(current),
        "subsampled": len(ref) < len(reference) or len(cur) < len(current),
        "settings": asdict(settings),
        "seconds": time.perf_counter() - start,
    }
