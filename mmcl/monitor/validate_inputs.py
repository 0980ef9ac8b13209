"""Refuse embedding sets that would give a meaningless drift score, with a message naming file, row, field.

A drift test on mismatched dimensions, on NaN/inf rows, on a handful of rows or on a constant encoder
output returns a number that means nothing; every entry point (CLI, detector, bench) checks here first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcl.errors import DataError, UserError

# Below this, the classifier's half/half train/test split leaves ~10 test points per side and the MMD
# permutation null has too few distinct values to reach alpha = 0.05 reliably.
MIN_SAMPLES = 20


def load_embeddings(path: str | Path) -> np.ndarray:
    """Read an embedding matrix [N, D] from a .npy file (no pickles), as float64."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "embedding file does not exist")
    if path.suffix != ".npy":
        raise DataError(path, f"expected a .npy file of shape [N, D], got suffix {path.suffix!r}")
    array = np_load_plain(path)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(path, f"embeddings must be real numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def np_load_plain(path: Path) -> np.ndarray:
    """np.load without pickles (a pickle can run code), with a DataError naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(path, f"not a readable .npy array ({exc})") from exc


def check_embeddings(x: np.ndarray, source: str | Path, *, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Return `x` as float64 [N, D] after checking shape, size, finiteness and non-degeneracy.

    Args:
        x: the embedding matrix, one row per sample.
        source: the file (or set name) the rows came from, named in every error.
        min_samples: fewest rows accepted (see MIN_SAMPLES).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(source, f"embeddings must be a 2-D array [N, D], got shape {tuple(x.shape)}")
    n, d = x.shape
    if n == 0:
        raise DataError(source, "the embedding set is empty (0 rows)")
    if d == 0:
        raise DataError(source, "embeddings have 0 dimensions")
    if n < min_samples:
        raise DataError(source, f"only {n} rows; a drift test needs at least {min_samples} per set")
    x = x.astype(np.float64, copy=False)
    bad = ~np.isfinite(x)  # [N, D]
    if bad.any():
        row, col = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(x[row, col]) else "inf"
        n_bad = int(bad.any(axis=1).sum())
        raise DataError(
            source,
            f"{kind} value at row index {row} (0-based); {n_bad} row(s) hold NaN/inf - fix or drop them",
            row=int(row) + 1,
            field=f"dim {col}",
        )
    norms = np.linalg.norm(x, axis=1)  # [N]
    if (norms == 0).any():
        row = int(np.flatnonzero(norms == 0)[0])
        raise DataError(
            source, f"row index {row} (0-based) is an all-zero vector (no direction)", row=row + 1
        )
    if np.all(x == x[0]):
        raise DataError(source, f"all {n} rows are identical: a constant encoder output cannot be tested")
    return x


def check_pair(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    reference_source: str | Path = "reference",
    current_source: str | Path = "current",
    min_samples: int = MIN_SAMPLES,
) -> tuple[np.ndarray, np.ndarray]:
    """Check both sets and that they live in the same space (same width)."""
    reference = check_embeddings(reference, reference_source, min_samples=min_samples)
    current = check_embeddings(current, current_source, min_samples=min_samples)
    if reference.shape[1] != current.shape[1]:
        raise UserError(
            f"dimension mismatch: {reference_source} has {reference.shape[1]} dims, {current_source} has "
            f"{current.shape[1]}; both sets must come from the same model and modality"
        )
    return reference, current
