"""Evidently 0.7 EmbeddingsDrift, classifier method with its bootstrap, turned into a calibrated test.

Pipeline: L2-normalise -> subsample each side to a fixed size -> PCA fitted on the *pooled* sample
(label-free, so the test's null is untouched) -> Evidently's `ModelDriftMethod(bootstrap=True)`, called
directly (a Report also draws a t-SNE plot: 12-16 s on 2x2000 rows; the method alone takes ~0.2 s).

What the classifier method does (evidently/legacy/metrics/data_drift/embedding_drift_methods.py):
pool reference (label 1) and current (label 0), split 50/50 with `random_state=42`, fit an
SGDClassifier(log_loss) on one half and score ROC AUC on the other. Its bootstrap compares that AUC with
the 95th percentile of 100 AUCs of *random* scores on the same test labels.

Why a p-value can be had: the classifier never sees the test half, so under H0 the test labels are a
random assignment to fixed scores and AUC * n1 * n0 is the Mann-Whitney U statistic with its known null
(mean n1 n0 / 2, variance n1 n0 (n1 + n0 + 1) / 12). We reproduce Evidently's split to get n1, n0 and
report the one-sided normal-approximation p-value (continuity-corrected; ties only shrink the variance,
so ignoring them is conservative). Evidently's own bootstrap verdict is reported beside it.

Reference: Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmcl.monitor.mmd import subsample

EMBEDDING_NAME = "embedding"


@dataclass(frozen=True)
class ClassifierSettings:
    """Settings of the Evidently classifier drift test (all recorded in the result)."""

    max_samples: int = 1000  # per side: fixed sizes keep the AUC null comparable from run to run
    pca_components: int = 20  # enough for SGD on 2x500 training rows; 384-d raw overfits the train half
    alpha: float = 0.05  # Evidently's bootstrap quantile is set to 1 - alpha
    # Evidently's bootstrap (100 AUCs of random scores, ~1 s CPU) only sets its own verdict; the AUC and
    # our p-value are computed before it and do not change. Off: Evidently's verdict is AUC > 0.55.
    evidently_bootstrap: bool = True


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm [N, D] (drift in direction, not in norm, is what cosine retrieval sees)."""
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pooled_pca(reference: np.ndarray, current: np.ndarray, n_components: int, seed: int):
    """PCA fitted on both sets together; returns (ref [m, k], cur [n, k], explained variance ratio)."""
    from sklearn.decomposition import PCA

    k = min(n_components, reference.shape[1], len(reference) + len(current) - 1)
    pca = PCA(n_components=k, random_state=seed).fit(np.vstack([reference, current]))
    return pca.transform(reference), pca.transform(current), float(pca.explained_variance_ratio_.sum())


def prepare(reference: np.ndarray, current: np.ndarray, settings: ClassifierSettings, seed: int):
    """Normalise, subsample to the fixed sizes, reduce with pooled PCA -> (ref_df, cur_df, info)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    ref = subsample(l2_normalise(reference), settings.max_samples, rng)  # [m, D]
    cur = subsample(l2_normalise(current), settings.max_samples, rng)  # [n, D]
    ref_k, cur_k, explained = pooled_pca(ref, cur, settings.pca_components, seed)  # [m, k], [n, k]
    columns = [f"pc{i}" for i in range(ref_k.shape[1])]  # Evidently needs string column names
    info = {"n_reference": len(ref), "n_current": len(cur), "pca_explained_variance": explained}
    return pd.DataFrame(ref_k, columns=columns), pd.DataFrame(cur_k, columns=columns), info


def evidently_test_counts(n_reference: int, n_current: int) -> tuple[int, int]:
    """(reference, current) counts in Evidently's test half: the same split call on the same order."""
    from sklearn.model_selection import train_test_split

    labels = np.r_[np.ones(n_reference, dtype=int), np.zeros(n_current, dtype=int)]
    _, y_test = train_test_split(labels, test_size=0.5, random_state=42, shuffle=True)
    n1 = int(y_test.sum())
    return n1, len(y_test) - n1


def auc_p_value(auc: float, n_pos: int, n_neg: int) -> float:
    """One-sided P(AUC >= observed | H0) from the Mann-Whitney U normal approximation."""
    from scipy.stats import norm

    if n_pos == 0 or n_neg == 0:
        return 1.0
    u = auc * n_pos * n_neg
    mean = n_pos * n_neg / 2.0
    sd = np.sqrt(n_pos * n_neg * (n_pos + n_neg + 1) / 12.0)
    return float(norm.sf((u - mean - 0.5) / sd))


def drift_method(settings: ClassifierSettings):
    """Evidently's classifier method with its bootstrap at quantile 1 - alpha (PCA done beforehand)."""
    from evidently.metrics.embeddings import ModelDriftMethod

    return ModelDriftMethod(
        bootstrap=settings.evidently_bootstrap, quantile_probability=1.0 - settings.alpha, pca_components=None
    )


def classifier_drift_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    settings: ClassifierSettings = ClassifierSettings(),
    seed: int = 0,
) -> dict:
    """Evidently classifier drift on prepared embeddings: ROC AUC, Mann-Whitney p-value, Evidently verdict.

    Args:
        reference: [N_ref, D] validated embeddings.
        current: [N_cur, D] embeddings in the same space.
        settings: per-side sample size, PCA width, alpha.
        seed: seeds subsampling and PCA (Evidently's own split/classifier seeds are fixed at 42).
    """
    start = time.perf_counter()
    ref_df, cur_df, info = prepare(reference, current, settings, seed)
    # the method adds a "target" column to the frames it gets: hand it copies; current comes first
    auc, evidently_flag, _ = drift_method(settings)(cur_df.copy(), ref_df.copy())
    n_pos, n_neg = evidently_test_counts(len(ref_df), len(cur_df))
    return {
        "score": float(auc),
        "score_name": "roc_auc",
        "p_value": auc_p_value(float(auc), n_pos, n_neg),
        "evidently_drift_detected": bool(evidently_flag),
        "n_test_reference": n_pos,
        "n_test_current": n_neg,
        **info,
        "n_reference_input": len(reference),
        "n_current_input": len(current),
        "settings": {
            **asdict(settings),
            "pca": "pooled",
            "evidently_rule": "AUC > bootstrap 1-alpha quantile of random-score AUCs"
            if settings.evidently_bootstrap
            else "AUC > 0.55 (Evidently default threshold)",
        },
        "seconds": time.perf_counter() - start,
    }


def run_report(
    reference: np.ndarray, current: np.ndarray, *, settings: ClassifierSettings, seed: int, **meta
):
    """Evidently Report (HTML-able Snapshot) of the same prepared data and method; slow: it draws a t-SNE.

    `meta` goes into the snapshot metadata (e.g. the p-values of every method), so the workspace keeps
    the full verdict beside Evidently's own figure.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift

    ref_df, cur_df, _ = prepare(reference, current, settings, seed)
    definition = DataDefinition(
        numerical_columns=list(ref_df.columns), embeddings={EMBEDDING_NAME: list(ref_df.columns)}
    )
    report = Report([EmbeddingsDrift(embeddings_name=EMBEDDING_NAME, drift_method=drift_method(settings))])
    metadata = {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in meta.items()}
    return report.run(
        Dataset.from_pandas(cur_df, data_definition=definition),
        Dataset.from_pandas(ref_df, data_definition=definition),
        metadata=metadata,
        tags=["mmcl", "embedding-drift"],
    )


def snapshot_score(snapshot) -> float:
    """The EmbeddingsDrift value stored in a Report snapshot (to check it equals the direct call)."""
    values = [r for r in snapshot.dict()["metrics"] if "EmbeddingsDrift" in str(r.get("metric_name", ""))]
    return float(values[0]["value"])


def save_to_workspace(snapshot, workspace: str | Path, project_name: str = "mmcl embedding drift") -> str:
    """Add the snapshot to a local Evidently workspace (created if needed); returns the snapshot id.

    `evidently ui --workspace DIR` then lists the project with one run per check and a line panel of
    the classifier AUC over time.
    """
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel
    from evidently.ui.workspace import Workspace

    ws = Workspace.create(str(workspace))
    found = ws.search_project(project_name)
    if found:
        project = found[0]
    else:
        project = ws.create_project(
            project_name, description="Embedding drift checks written by `mmcl drift`"
        )
        project.dashboard.add_panel(
            line_plot_panel(
                title="Embedding drift: classifier ROC AUC",
                values=[PanelMetric(legend="ROC AUC", metric="EmbeddingsDrift")],
            )
        )
    return str(ws.add_run(project.id, snapshot, include_data=False).id)
