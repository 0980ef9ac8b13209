"""SentEval transfer tasks: logistic regression on frozen sentence embeddings, accuracy x100.

    python -m mmcl eval senteval --model all-minilm-l6-v2 --output reports/transfer.json

Protocols (SentEval, senteval/tools/validation.py, sklearn path):
- MR, CR, SUBJ, MPQA: 10-fold stratified CV (shuffle, seed 1111); the regularisation C is chosen per
  outer fold on a stratified 10% hold-out of that fold's training part, then refit on the whole part.
- SST-2: C chosen on dev, test accuracy of that model (trained on train).
- TREC, MRPC: C chosen on a 10% hold-out of train, refit on train, accuracy on test.
- MRPC pairs are represented as [u, v, |u - v|, u * v] (InferSent); F1 is reported beside accuracy.
Cheaper than SentEval's nested 10x10 CV (one inner hold-out instead of an inner k-fold) and a 4-value
C grid (SentEval's sklearn grid is 2^-2..2^3; we use 2^-2..2^4 every other power) fitted in ascending
order with lbfgs warm starts. Features are the raw embeddings, as in SentEval.

Reference: Conneau & Kiela, SentEval (LREC 2018); Conneau et al., InferSent (EMNLP 2017) for the pair
features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmcl.data.senteval import TRANSFER_TASKS, TransferSplit, TransferTask, load_transfer_task
from mmcl.eval.embedders import TextEmbedder
from mmcl.registry import EVALUATORS

C_GRID = (0.25, 1.0, 4.0, 16.0)
SEED = 1111  # SentEval's seed for its fold split


@dataclass(frozen=True)
class Fit:
    """A chosen C, its validation accuracy and the test predictions of the model refit with it."""

    c: float
    val_acc: float
    test_pred: np.ndarray


def _select_and_fit(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_test: np.ndarray,
    c_grid: tuple[float, ...],
    max_iter: int,
) -> Fit:
    """Pick C on (x_val, y_val) after fitting on (x_tr, y_tr), then fit (x_fit, y_fit) and predict x_test.

    x_fit may be x_tr itself (SST-2: SentEval keeps the train-only model) — then no refit happens.
    """
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=max_iter, warm_start=True)  # ascending C: each fit starts from the last
    scores, models = [], []
    for c in sorted(c_grid):
        clf.set_params(C=c)
        clf.fit(x_tr, y_tr)
        scores.append(float((clf.predict(x_val) == y_val).mean()))
        models.append((clf.coef_.copy(), clf.intercept_.copy()))
    best = int(np.argmax(scores))
    c = sorted(c_grid)[best]
    if x_fit is x_tr:
        clf.coef_, clf.intercept_ = models[best]
    else:
        clf = LogisticRegression(C=c, max_iter=max_iter).fit(x_fit, y_fit)
    return Fit(c, 100.0 * scores[best], clf.predict(x_test))


def _holdout(y: np.ndarray, fraction: float = 0.1, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation indices; falls back to a plain shuffle when a class is too rare."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 else None
    return train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[u, v, |u - v|, u * v]: [N, D] x2 -> [N, 4D] (InferSent's pair representation)."""
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float(((pred == 1) & (y == 1)).sum())
    denom = float((pred == 1).sum() + (y == 1).sum())
    return 100.0 * 2 * tp / denom if denom else 0.0


@EVALUATORS.register("senteval")
class TransferEvaluator:
    """The seven SentEval transfer tasks for any TextEmbedder (all sentences encoded in one call).

    Args:
        tasks: names among TRANSFER_TASKS.
        data_dir: data root (default: mmcl.data.paths.data_dir()).
        max_samples: keep a seeded random N examples per split (quick runs; not comparable to papers).
        c_grid: inverse L2 strengths tried for logistic regression.
        folds: outer folds for MR/CR/SUBJ/MPQA (SentEval: 10).
    """

    def __init__(
        self,
        tasks: tuple[str, ...] | list[str] = TRANSFER_TASKS,
        data_dir: str | Path | None = None,
        max_samples: int | None = None,
        c_grid: tuple[float, ...] = C_GRID,
        folds: int = 10,
        max_iter: int = 1000,
    ) -> None:
        unknown = [t for t in tasks if t not in TRANSFER_TASKS]
        if unknown:
            raise ValueError(f"unknown transfer task(s) {unknown}; expected some of {TRANSFER_TASKS}")
        self.max_samples, self.c_grid, self.folds, self.max_iter = max_samples, tuple(c_grid), folds, max_iter
        self.tasks = {name: self._cap(load_transfer_task(name, data_dir)) for name in tasks}

    def _cap(self, task: TransferTask) -> TransferTask:
        if self.max_samples is None:
            return task
        splits = {}
        for name, split in task.splits.items():
            if len(split) <= self.max_samples:
                splits[name] = split
                continue
            keep = np.sort(np.random.default_rng(SEED).permutation(len(split))[: self.max_samples])
            s2 = [split.sentences2[i] for i in keep] if split.sentences2 is not None else None
            splits[name] = TransferSplit([split.sentences[i] for i in keep], split.labels[keep], s2)
        return TransferTask(task.name, splits, task.n_classes, task.protocol)

    def sentences(self) -> list[str]:
        seen: dict[str, None] = {}
        for task in self.tasks.values():
            for split in task.splits.values():
                seen.update(dict.fromkeys(split.sentences))
                seen.update(dict.fromkeys(split.sentences2 or []))
        return list(seen)

    def __call__(self, embedder: TextEmbedder) -> dict[str, Any]:
        started = time.perf_counter()
        unique = self.sentences()
        emb = embedder.encode(unique)  # [U, D]
        encode_s = time.perf_counter() - started
        row = {s: i for i, s in enumerate(unique)}

        def features(split: TransferSplit) -> np.ndarray:
            u = emb[[row[s] for s in split.sentences]]  # [N, D]
            if split.sentences2 is None:
                return u
            return pair_features(u, emb[[row[s] for s in split.sentences2]])  # [N, 4D]

        details: dict[str, Any] = {}
        for name, task in self.tasks.items():
            t0 = time.perf_counter()
            feats = {s: (features(split), split.labels) for s, split in task.splits.items()}
            if task.protocol == "cv":
                details[name] = self._run_cv(feats["all"])
            else:  # F1 of the positive class is MRPC's second customary number
                details[name] = self._run_split(feats, with_f1=task.splits["train"].sentences2 is not None)
            details[name]["fit_s"] = round(time.perf_counter() - t0, 3)
        result: dict[str, Any] = {name: details[name]["acc"] for name in self.tasks}
        result["avg"] = float(np.mean([result[name] for name in self.tasks]))
        result["details"] = {
            "metric": "test accuracy x100 (10-fold CV mean for MR/CR/SUBJ/MPQA)",
            "classifier": {
                "model": "sklearn LogisticRegression (lbfgs, L2)",
                "c_grid": list(self.c_grid),
                "folds": self.folds,
                "inner_selection": "stratified 10% hold-out",
                "seed": SEED,
            },
            "max_samples": self.max_samples,
            "model": embedder.describe()
            if hasattr(embedder, "describe")
            else {"kind": type(embedder).__name__},
            "tasks": details,
            "timing": {
                "encode_s": round(encode_s, 3),
                "total_s": round(time.perf_counter() - started, 3),
                "n_unique_sentences": len(unique),
            },
        }
        return result

    def _run_cv(self, data: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
        from sklearn.model_selection import StratifiedKFold

        x, y = data
        folds = min(self.folds, int(np.unique(y, return_counts=True)[1].min()))
        accs, cs = [], []
        for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(x, y):
            inner_tr, inner_val = _holdout(y[train_idx])
            tr, val = train_idx[inner_tr], train_idx[inner_val]
            fit = _select_and_fit(
                x[tr],
                y[tr],
                x[val],
                y[val],
                x[train_idx],
                y[train_idx],
                x[test_idx],
                self.c_grid,
                self.max_iter,
            )
            accs.append(100.0 * float((fit.test_pred == y[test_idx]).mean()))
            cs.append(fit.c)
        return {"acc": float(np.mean(accs)), "fold_acc": accs, "fold_c": cs, "folds": folds, "n": len(y)}

    def _run_split(
        self, data: dict[str, tuple[np.ndarray, np.ndarray]], with_f1: bool = False
    ) -> dict[str, Any]:
        (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
        if "dev" in data:  # SST-2: select on dev, keep the train-only model
            x_val, y_val = data["dev"]
            fit = _select_and_fit(
                x_train, y_train, x_val, y_val, x_train, y_train, x_test, self.c_grid, self.max_iter
            )
        else:
            tr, val = _holdout(y_train)
            fit = _select_and_fit(
                x_train[tr],
                y_train[tr],
                x_train[val],
                y_train[val],
                x_train,
                y_train,
                x_test,
                self.c_grid,
                self.max_iter,
            )
        out = {
            "acc": 100.0 * float((fit.test_pred == y_test).mean()),
            "dev_acc": fit.val_acc,
            "c": fit.c,
            "n_train": len(y_train),
            "n_test": len(y_test),
        }
        if with_f1:
            out["f1"] = _f1(y_test, fit.test_pred)
        return out
