"""Run the drift methods on one reference/current pair and return one JSON-able verdict.

Gated methods (tests with a calibrated p-value): "mmd" (own pooled-permutation MMD test) and
"classifier" (Evidently classifier method, Mann-Whitney p-value). "centroid" is descriptive.
Overall `drift_detected` is Bonferroni over the gated methods that ran: drift when any p < alpha / k,
so the overall false-alarm rate stays <= alpha (each method alone is reported at alpha too).

Rows must be independent samples. Several rows of one item (the five captions of one image, frames of
one clip) are strongly correlated: with 200 images x 5 captions per side and no drift at all, both tests
flag drift in >= 92% of same-distribution splits (bench/RESULTS.md). Pass `reference_groups` /
`current_groups` (one item id per row): rows are then averaged per item (after L2 normalisation) and the
tests run on one row per item, which restores calibration.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import numpy as np

from mmcl.errors import DataError, UserError
from mmcl.monitor.centroid import centroid_cosine_distance
from mmcl.monitor.evidently_drift import ClassifierSettings, classifier_drift_test, l2_normalise
from mmcl.monitor.mmd import MmdSettings, mmd_permutation_test
from mmcl.monitor.validate_inputs import MIN_SAMPLES, check_pair

METHODS = ("mmd", "classifier", "centroid")
GATED = ("mmd", "classifier")


@dataclass(frozen=True)
class DriftSettings:
    """Everything that changes a verdict; written into the result."""

    alpha: float = 0.05
    seed: int = 0
    min_samples: int = MIN_SAMPLES
    normalise: bool = True  # L2-normalise rows first: model embeddings are compared by cosine
    mmd: MmdSettings = field(default_factory=MmdSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)


def _run_method(name: str, ref: np.ndarray, cur: np.ndarray, settings: DriftSettings) -> dict:
    if name == "mmd":
        return mmd_permutation_test(ref, cur, settings=settings.mmd, seed=settings.seed)
    if name == "classifier":
        clf = ClassifierSettings(**{**asdict(settings.classifier), "alpha": settings.alpha})
        return classifier_drift_test(ref, cur, settings=clf, seed=settings.seed)
    if name == "centroid":
        return centroid_cosine_distance(ref, cur)
    raise ValueError(f"unknown drift method {name!r}; choose from {METHODS}")


def group_means(x: np.ndarray, groups, source: str, min_samples: int) -> np.ndarray:
    """One row per group: mean of the group's unit rows, re-normalised [G, D] (groups in sorted-id order)."""
    groups = np.asarray(groups)
    if groups.shape != (len(x),):
        raise UserError(
            f"{source}: {len(groups)} group ids for {len(x)} embedding rows (need one id per row)"
        )
    ids, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(ids), x.shape[1]))  # [G, D]; the mean's direction = the sum's direction
    np.add.at(sums, inverse, l2_normalise(x))
    if len(ids) < min_samples:
        raise DataError(source, f"only {len(ids)} groups; a drift test needs at least {min_samples} per set")
    return l2_normalise(sums)


def detect_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    methods: tuple[str, ...] | list[str] = METHODS,
    settings: DriftSettings = DriftSettings(),
    reference_source: str = "reference",
    current_source: str = "current",
    reference_groups=None,
    current_groups=None,
) -> dict:
    """Validate the pair, run `methods`, and combine the gated p-values into one decision.

    Args:
        reference: [N_ref, D] embeddings from the reference window (same model as current).
        current: [N_cur, D] embeddings from the current window.
        methods: any of METHODS.
        settings: alpha, seed, per-method settings.
        reference_source, current_source: names used in error messages and the result (file paths).
        reference_groups, current_groups: optional item id per row; rows are averaged per item first.
    Returns:
        {"drift_detected", "alpha", "decision_rule", "methods": {name: {...p_value, score, drift_detected,
        gated, n_reference, n_current, settings}}, sizes, seed, timestamp}.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown drift method(s) {unknown}; choose from {list(METHODS)}")
    if (reference_groups is None) != (current_groups is None):
        raise UserError("give group ids for both sets or for neither")
    ref, cur = check_pair(
        reference,
        current,
        reference_source=reference_source,
        current_source=current_source,
        min_samples=settings.min_samples if reference_groups is None else 1,
    )
    n_rows = (len(ref), len(cur))
    if reference_groups is not None:
        ref = group_means(ref, reference_groups, reference_source, settings.min_samples)
        cur = group_means(cur, current_groups, current_source, settings.min_samples)
    if settings.normalise:
        ref, cur = l2_normalise(ref), l2_normalise(cur)
    gated = [m for m in methods if m in GATED]
    threshold = settings.alpha / max(len(gated), 1)
    results = {}
    for name in methods:
        res = _run_method(name, ref, cur, settings)
        res["gated"] = name in gated
        if res["p_value"] is not None:
            res["drift_detected"] = bool(res["p_value"] < settings.alpha)
        results[name] = res
    grouped = reference_groups is not None
    return {
        "drift_detected": any(results[m]["p_value"] < threshold for m in gated),
        "alpha": settings.alpha,
        "decision_rule": f"drift if any gated method has p < alpha / {len(gated)} = {threshold:g} (Bonferroni)",
        "gated_methods": gated,
        "methods": results,
        "grouped": grouped,
        "reference": {"source": reference_source, "n": len(ref), "rows": n_rows[0], "dim": ref.shape[1]},
        "current": {"source": current_source, "n": len(cur), "rows": n_rows[1], "dim": cur.shape[1]},
        "settings": asdict(settings),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
