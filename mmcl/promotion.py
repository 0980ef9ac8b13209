"""The statistical promotion gate: is the challenger worse than the champion, on the same queries and pairs?

A fixed tolerance on a headline figure ("RSUM may drop by 10") cannot tell noise from a worse model: on 24
test images two retrains of the same config differ by ~100 RSUM. Instead both models are compared on the
*same* items with a paired bootstrap (Efron & Tibshirani 1993, ch. 16; the paired design of Koehn 2004 for
MT and Dror et al. 2018 for NLP): resample the items with replacement, recompute both models' figure on the
same resample, and read the distribution of the difference Δ = challenger - champion.

    decision = compare_retrieval(champion_items, challenger_items, confidence=0.95)
    decision.worse        # True when even the upper 95 % bound of Δ lies below -margin

The decision is one-sided, at the stated confidence: the challenger is *rejected* only when the data show,
at that confidence, that it is worse than the champion by more than `margin` (0 by default), i.e. when
the upper `confidence` quantile of the bootstrap Δ is below -margin. A retrain that is as good as the
champion is then promoted with probability about `confidence` or more (bench/RESULTS.md measures the rate),
and a clearly worse model is rejected once the test set can show it.

Resampling units: retrieval resamples *images* (a text->image query belongs to its image, and an image's five
captions are not independent), STS resamples pairs within each STS set (sets are strata; their average is the
figure). Items come from `mmcl eval sts|retrieval`, which write them beside the report as <stem>.items.npz.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmcl.errors import DataError

KS = (1, 5, 10)
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class PairedDecision:
    """One gated figure of challenger vs champion on the same items."""

    metric: str
    challenger: float
    champion: float
    delta: float  # challenger - champion on all items
    low: float  # lower (1 - confidence) quantile of the bootstrap delta
    high: float  # upper `confidence` quantile of the bootstrap delta
    confidence: float
    margin: float
    units: int  # resampled units (images, or pairs over all sets)
    resamples: int
    worse: bool  # high < -margin: worse than the champion at this confidence

    @property
    def passed(self) -> bool:
        return not self.worse

    def reason(self) -> str:
        level = f"{100 * self.confidence:.4g}%"
        limit = f"-{self.margin:g}" if self.margin else "0"
        verdict = (f"worse (upper {level} bound {self.high:+.2f} < {limit})" if self.worse
                   else f"not shown worse at {level}")
        return (f"{self.challenger:.2f} vs champion {self.champion:.2f}: delta {self.delta:+.2f}, "
                f"{100 * (2 * self.confidence - 1):.4g}% interval [{self.low:+.2f}, {self.high:+.2f}] over "
                f"{self.units} resampled units: {verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "reason": self.reason()}


def _decide(metric: str, observed: tuple[float, float], deltas: np.ndarray, confidence: float, margin: float,
            units: int) -> PairedDecision:
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    low, high = np.quantile(deltas, [1.0 - confidence, confidence])
    champion, challenger = observed
    return PairedDecision(metric, float(challenger), float(champion), float(challenger - champion), float(low),
                          float(high), confidence, margin, units, int(deltas.size), bool(high < -margin))


def bootstrap_weights(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """[resamples, n] counts of each unit in n draws with replacement (a multinomial, by one bincount)."""
    draws = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def load_items(path: str | Path) -> dict[str, np.ndarray]:
    """The per-item arrays of one evaluation (<stem>.items.npz); a missing or unreadable file names itself."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no per-item evaluation results: evaluate the model again (mmcl eval ...) to write them")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # a truncated or foreign file is a reason, not a traceback
        raise DataError(path, f"cannot read per-item results ({type(exc).__name__}: {exc})") from None


# ---- retrieval: RSUM over both directions, images resampled -------------------------------------------------

def _directions(items: dict[str, np.ndarray]) -> list[str]:
    return sorted(k.removesuffix("/rank") for k in items if k.endswith("/rank"))


def _group_sums(items: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, np.ndarray]:
    """Per direction: [G, 1 + len(KS)] = (queries of the group, hits@k of the group for each k)."""
    index = {g: i for i, g in enumerate(groups)}
    out = {}
    for d in _directions(items):
        g = np.fromiter((index[x] for x in items[f"{d}/group"]), dtype=np.int64, count=len(items[f"{d}/group"]))
        rank = items[f"{d}/rank"]
        cols = [np.bincount(g, minlength=len(groups))]
        cols += [np.bincount(g, weights=(rank <= k).astype(np.float64), minlength=len(groups)) for k in KS]
        out[d] = np.stack(cols, axis=1).astype(np.float64)
    return out


def _rsum(sums: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
    """RSUM under group weights [B, G] (bootstrap counts; ones for the observed figure) -> [B]."""
    total = np.zeros(weights.shape[0])
    for table in sums.values():
        agg = weights @ table  # [B, 1 + len(KS)]
        total += 100.0 * (agg[:, 1:] / np.maximum(agg[:, :1], 1e-12)).sum(axis=1)
    return total


def _same_queries(champion: dict[str, np.ndarray], challenger: dict[str, np.ndarray]) -> None:
    if _directions(champion) != _directions(challenger):
        raise DataError("items", f"different retrieval directions: {_directions(champion)} vs "
                                 f"{_directions(challenger)}")
    for d in _directions(champion):
        if not np.array_equal(champion[f"{d}/group"], challenger[f"{d}/group"]):
            raise DataError("items", f"{d}: the two evaluations ranked different queries: evaluate both "
                                     "under the same protocol")


def compare_retrieval(champion: dict[str, np.ndarray], challenger: dict[str, np.ndarray], *,
                      confidence: float = DEFAULT_CONFIDENCE, margin: float = 0.0,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> PairedDecision:
    """Paired bootstrap of RSUM (sum of R@1/5/10 over both directions), resampling images."""
    _same_queries(champion, challenger)
    groups = np.unique(np.concatenate([champion[f"{d}/group"] for d in _directions(champion)]))
    sums_a, sums_b = _group_sums(champion, groups), _group_sums(challenger, groups)
    rng = np.random.default_rng(seed)
    counts = bootstrap_weights(rng, len(groups), resamples)  # [B, G]
    ones = np.ones((1, len(groups)))
    observed = (float(_rsum(sums_a, ones)[0]), float(_rsum(sums_b, ones)[0]))
    deltas = _rsum(sums_b, counts) - _rsum(sums_a, counts)
    return _decide("retrieval_rsum", observed, deltas, confidence, margin, len(groups))


# ---- STS: mean over sets of Spearman x100, pairs resampled within each set ----------------------------------

def _sets(items: dict[str, np.ndarray]) -> list[str]:
    return sorted(k.removesuffix("/gold") for k in items if k.endswith("/gold"))


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x100 Pearson correlation of x [n] and y [n] under each row of weights w [B, n] -> [B]."""
    total = w.sum(axis=1)
    mx, my = (w @ x) / total, (w @ y) / total
    cov = (w @ (x * y)) / total - mx * my
    vx, vy = (w @ (x * x)) / total - mx * mx, (w @ (y * y)) / total - my * my
    return 100.0 * cov / np.sqrt(np.maximum(vx * vy, 1e-24))


def compare_sts(champion: dict[str, np.ndarray], challenger: dict[str, np.ndarray], *,
                confidence: float = DEFAULT_CONFIDENCE, margin: float = 0.0, resamples: int = DEFAULT_RESAMPLES,
                seed: int = 0) -> PairedDecision:
    """Paired bootstrap of the STS average (mean over sets of Spearman x100), resampling pairs per set.

    The observed figures are exact Spearman correlations (Pearson of average ranks). In the resamples the
    ranks of the full set are kept (Pearson of fixed ranks under bootstrap weights): re-ranking each resample
    would cost a sort per resample (~80 s on the 19k pairs of the seven sets, 2 cores) for a distribution of
    the difference that differs only by ties among duplicated pairs."""
    from scipy.stats import rankdata

    sets = _sets(champion)
    if sets != _sets(challenger):
        raise DataError("items", f"different STS sets: {sets} vs {_sets(challenger)}")
    rng = np.random.default_rng(seed)
    observed_a, observed_b, deltas, units = [], [], np.zeros(resamples), 0
    for name in sets:
        gold = champion[f"{name}/gold"]
        if not np.array_equal(gold, challenger[f"{name}/gold"]):
            raise DataError("items", f"{name}: the two evaluations scored different pairs: evaluate both under the "
                                     "same protocol")
        n = len(gold)
        rg, ra, rb = rankdata(gold), rankdata(champion[f"{name}/pred"]), rankdata(challenger[f"{name}/pred"])
        ones = np.ones((1, n))
        observed_a.append(_weighted_pearson(rg, ra, ones)[0])
        observed_b.append(_weighted_pearson(rg, rb, ones)[0])
        w = bootstrap_weights(rng, n, resamples)  # [B, n]
        deltas += _weighted_pearson(rg, rb, w) - _weighted_pearson(rg, ra, w)
        units += n
    deltas /= len(sets)
    observed = (float(np.mean(observed_a)), float(np.mean(observed_b)))
    return _decide("sts_avg", observed, deltas, confidence, margin, units)


COMPARATORS = {"retrieval_rsum": compare_retrieval, "sts_avg": compare_sts}


def compare_items(metric: str, champion_items: str | Path, challenger_items: str | Path, **options: Any
                  ) -> PairedDecision:
    """The paired decision for a gated metric from the two evaluations' item files."""
    if metric not in COMPARATORS:
        raise ValueError(f"no paired comparison for {metric!r} (known: {', '.join(COMPARATORS)})")
    return COMPARATORS[metric](load_items(champion_items), load_items(challenger_items), **options)
