"""Evidently classifier drift: the Mann-Whitney p-value, calibration and power on real embeddings."""

from __future__ import annotations

import numpy as np

from mmcl.monitor.evidently_drift import (
    ClassifierSettings,
    auc_p_value,
    classifier_drift_test,
    evidently_test_counts,
)

SMALL = ClassifierSettings(max_samples=1000, pca_components=20)
# same AUC and p-value; skips Evidently's 100-draw bootstrap of its own verdict (~1 s CPU per call)
NO_BOOT = ClassifierSettings(max_samples=1000, pca_components=20, evidently_bootstrap=False)


def test_auc_p_value_matches_mann_whitney():
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.2, 1, 70), rng.normal(0, 1, 90)
    auc = roc_auc_score(np.r_[np.ones(70), np.zeros(90)], np.r_[pos, neg])
    expected = mannwhitneyu(pos, neg, alternative="greater", method="asymptotic", use_continuity=True).pvalue
    assert np.isclose(auc_p_value(auc, 70, 90), expected, rtol=1e-6)


def test_test_counts_reproduce_evidentlys_split():
    n1, n0 = evidently_test_counts(150, 120)
    assert n1 + n0 == 135 and 0 < n1 < 150 and 0 < n0 < 120


def test_false_alarm_rate_on_same_distribution_splits(null_pair):
    """40 same-distribution splits of real caption embeddings: p < 0.05 at most 5 times."""
    rng = np.random.default_rng(0)
    p_values = []
    for i in range(40):
        ref, cur = null_pair(150, rng)
        p_values.append(classifier_drift_test(ref, cur, settings=NO_BOOT, seed=i)["p_value"])
    p_values = np.array(p_values)
    assert (p_values < 0.05).sum() <= 5, p_values
    assert 0.3 < p_values.mean() < 0.7


def test_detects_movie_reviews_mixed_into_captions(shifted_pair):
    # at n = 150 the classifier sees only ~75 rows per side in training: it needs a larger shift than MMD
    ref, cur = shifted_pair(150, 0.5, np.random.default_rng(3))
    res = classifier_drift_test(ref, cur, settings=SMALL, seed=0)
    assert res["p_value"] < 0.01 and res["score"] > 0.6
    assert res["evidently_drift_detected"]
    assert (res["n_reference"], res["n_current"]) == (150, 150)
    assert classifier_drift_test(ref, cur, settings=NO_BOOT, seed=0)["p_value"] == res["p_value"]


def test_p_value_is_mann_whitney_on_evidentlys_own_held_out_scores(shifted_pair):
    """Re-run Evidently's split + classifier by hand: its test-half scores give the same AUC, and
    Mann-Whitney on them gives our p-value (so the p-value is about Evidently's exact statistic)."""
    import pandas as pd
    from scipy.stats import mannwhitneyu
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from mmcl.monitor.evidently_drift import prepare

    ref, cur = shifted_pair(120, 0.2, np.random.default_rng(5))
    res = classifier_drift_test(ref, cur, settings=NO_BOOT, seed=3)
    ref_df, cur_df, _ = prepare(ref, cur, NO_BOOT, 3)
    data = pd.concat([ref_df.assign(target=1), cur_df.assign(target=0)])
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.drop("target", axis=1), data["target"], test_size=0.5, random_state=42, shuffle=True
    )
    scores = SGDClassifier(loss="log_loss", random_state=42).fit(x_tr, y_tr).predict_proba(x_te)[:, 1]
    assert np.isclose(roc_auc_score(y_te, scores), res["score"])
    assert (int(y_te.sum()), int((1 - y_te).sum())) == (res["n_test_reference"], res["n_test_current"])
    mw = mannwhitneyu(
        scores[y_te.values == 1],
        scores[y_te.values == 0],
        alternative="greater",
        method="asymptotic",
        use_continuity=True,
    )
    assert np.isclose(mw.pvalue, res["p_value"], rtol=0.05)  # equal up to the tie correction
