"""Semantic textual similarity (SentEval protocol): cosine of the two sentence embeddings vs gold.

    python -m mmcl eval sts --model all-minilm-l6-v2 --output reports/sts.json

Numbers are Spearman x100 (Pearson x100 in `details`). STS12-16: "all" = one Spearman over the
concatenated subsets (the number SimCSE, MCSE and KDMCSE report), plus "mean" and "wmean" (weighted by
pair count) over subsets; STS-B and SICK-R: the test split. Unscored pairs are skipped by the reader.

Reference: Conneau & Kiela, SentEval (LREC 2018), senteval/sts.py; Gao et al., SimCSE (EMNLP 2021),
evaluation.py ("all" setting for STS12-16, test split for STS-B / SICK-R).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mmcl.data.senteval import STS_SETS, StsSubset, load_sts
from mmcl.eval.embedders import TextEmbedder
from mmcl.registry import EVALUATORS

# Cosines are rounded before ranking: float32 embeddings carry ~1e-7 noise that depends on batch padding
# and thread count, and STS12 SMTeuroparl alone has 33 identical-sentence pairs (cosine exactly 1 in exact
# arithmetic). Unrounded, their order is decided by that noise and the Spearman moves by ~0.1 between two
# runs of the same model; at 1e-5 they tie, as they should, and distinct pairs practically never merge.
SIMILARITY_DECIMALS = 5


def cosine_rows(a: np.ndarray, b: np.ndarray, decimals: int | None = SIMILARITY_DECIMALS) -> np.ndarray:
    """Row-wise cosine similarity of [N, D] and [N, D] -> [N] float64 (zero vectors give 0), rounded."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.divide((a * b).sum(axis=1), denom, out=np.zeros(len(a)), where=denom > 0)  # [N]
    return cos if decimals is None else np.round(cos, decimals)


def correlations(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson x100 (scipy); NaN when either side is constant."""
    from scipy.stats import pearsonr, spearmanr

    if len(gold) < 2 or np.ptp(gold) == 0 or np.ptp(pred) == 0:
        return {"spearman": float("nan"), "pearson": float("nan")}
    return {
        "spearman": 100.0 * float(spearmanr(gold, pred)[0]),
        "pearson": 100.0 * float(pearsonr(gold, pred)[0]),
    }


def _aggregate(per_subset: dict[str, dict[str, Any]], gold: list[np.ndarray], pred: list[np.ndarray]) -> dict:
    """SentEval's three aggregations over the subsets of one STS set."""
    counts = np.asarray([s["n_pairs"] for s in per_subset.values()], dtype=np.float64)
    out: dict[str, Any] = {"all": correlations(np.concatenate(gold), np.concatenate(pred))}
    for name, weights in (("mean", None), ("wmean", counts)):
        out[name] = {
            key: float(np.average([s[key] for s in per_subset.values()], weights=weights))
            for key in ("spearman", "pearson")
        }
    return out


@EVALUATORS.register("sts")
class StsEvaluator:
    """STS12-16, STS-B and SICK-R for any TextEmbedder, encoding every distinct sentence once.

    Args:
        sets: names among STS_SETS (sts12..sts16, stsb, sickr).
        data_dir: data root (default: mmcl.data.paths.data_dir()).
        split: STS-B / SICK-R split ("test" for the papers' numbers, "dev" for model selection).
        max_pairs: keep only the first N pairs of each subset (quick runs; not comparable to papers).
    Relations: `details.<set>.all.spearman` is SentEval's results[task]["all"]["spearman"]["all"] x100;
        the headline key per set is that number (STS-B / SICK-R have one subset, so all == mean).
    """

    def __init__(
        self,
        sets: tuple[str, ...] | list[str] = STS_SETS,
        data_dir: str | Path | None = None,
        split: str = "test",
        max_pairs: int | None = None,
    ) -> None:
        unknown = [s for s in sets if s not in STS_SETS]
        if unknown:
            raise ValueError(f"unknown STS set(s) {unknown}; expected some of {STS_SETS}")
        started = time.perf_counter()
        self.split, self.max_pairs = split, max_pairs
        self.data: dict[str, list[StsSubset]] = {
            name: [self._cap(s) for s in load_sts(name, data_dir, split)] for name in sets
        }
        self.load_s = time.perf_counter() - started

    def _cap(self, subset: StsSubset) -> StsSubset:
        if self.max_pairs is None or len(subset) <= self.max_pairs:
            return subset
        n = self.max_pairs
        return StsSubset(
            subset.name,
            subset.sentences1[:n],
            subset.sentences2[:n],
            subset.scores[:n],
            subset.source,
            subset.n_skipped,
        )

    def sentences(self) -> list[str]:
        """Every distinct sentence of every selected set, first-seen order."""
        seen: dict[str, None] = {}
        for subsets in self.data.values():
            for sub in subsets:
                seen.update(dict.fromkeys(sub.sentences1))
                seen.update(dict.fromkeys(sub.sentences2))
        return list(seen)

    def __call__(self, embedder: TextEmbedder) -> dict[str, Any]:
        started = time.perf_counter()
        unique = self.sentences()
        emb = embedder.encode(unique)  # [U, D]
        encode_s = time.perf_counter() - started
        row = {s: i for i, s in enumerate(unique)}
        sets = {name: self._score_set(subsets, emb, row) for name, subsets in self.data.items()}
        total_pairs = sum(s["n_pairs"] for s in sets.values())
        result: dict[str, Any] = {name: sets[name]["all"]["spearman"] for name in self.data}
        # per pair (the subsets of a set concatenated, as for its "all" figure): gold and predicted similarity,
        # for paired comparisons of two models on the same pairs
        result["per_item"] = {f"{name}/{kind}": sets[name].pop(f"_{kind}") for name in self.data
                              for kind in ("gold", "pred")}
        result["avg"] = float(np.mean([result[name] for name in self.data]))
        result["details"] = {
            "metric": "Spearman x100 of cosine similarity vs gold (SentEval 'all' for STS12-16)",
            "split": self.split,
            "similarity_decimals": SIMILARITY_DECIMALS,
            "max_pairs": self.max_pairs,
            "model": embedder.describe()
            if hasattr(embedder, "describe")
            else {"kind": type(embedder).__name__},
            "sets": sets,
            "timing": {
                "load_s": round(self.load_s, 3),
                "encode_s": round(encode_s, 3),
                "score_s": round(time.perf_counter() - started - encode_s, 3),
                "total_s": round(time.perf_counter() - started + self.load_s, 3),
                "n_pairs": total_pairs,
                "n_sentences": 2 * total_pairs,
                "n_unique_sentences": len(unique),
                "unique_sentences_per_s": round(len(unique) / max(encode_s, 1e-9), 1),
            },
        }
        return result

    def _score_set(self, subsets: list[StsSubset], emb: np.ndarray, row: dict[str, int]) -> dict[str, Any]:
        per_subset, golds, preds = {}, [], []
        for sub in subsets:
            a = emb[[row[s] for s in sub.sentences1]]  # [N, D]
            b = emb[[row[s] for s in sub.sentences2]]  # [N, D]
            pred = cosine_rows(a, b)
            per_subset[sub.name] = {
                **correlations(sub.scores, pred),
                "n_pairs": len(sub),
                "n_skipped": sub.n_skipped,
            }
            golds.append(sub.scores)
            preds.append(pred)
        return {
            **_aggregate(per_subset, golds, preds),
            "_gold": np.concatenate(golds).astype(np.float64),
            "_pred": np.concatenate(preds).astype(np.float64),
            "n_pairs": sum(s["n_pairs"] for s in per_subset.values()),
            "n_skipped": sum(s["n_skipped"] for s in per_subset.values()),
            "subsets": per_subset,
        }


def stsb_dev_spearman(embedder: TextEmbedder, data_dir: str | Path | None = None) -> float:
    """STS-B dev Spearman x100: the model-selection signal of SimCSE / KDMCSE (every 125 steps)."""
    return StsEvaluator(("stsb",), data_dir, split="dev")(embedder)["stsb"]
