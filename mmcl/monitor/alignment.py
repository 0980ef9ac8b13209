"""Alignment drift: are a new drop's pairs as well matched, under the champion, as the reference's?

Marginal drift tests (mmd.py, evidently_drift.py) look at one modality at a time. A drop whose captions are
attached to the wrong images keeps every marginal distribution exactly as it was, so they cannot see it;
what moves is the *paired* similarity cos(caption_i, image_i) under the champion. This module tests that.

Test (one per pair of present modalities, e.g. text-image, text-audio, image-audio):
- score per row = cosine of the row's two embeddings (champion, L2-normalised);
- rows of one item (the five captions of one image) are not independent, so rows are grouped by item and
  each group contributes ONE score: its worst pair (the minimum over its rows). The minimum, not the mean,
  because one wrong caption among five is what a shuffled drop produces, and the mean dilutes it five-fold;
- statistic T = mean(reference group scores) - mean(current group scores) (one-sided: only a loss of
  alignment is drift);
- null: under H0 the reference/current labels of the groups are exchangeable, so T is recomputed over P
  random relabellings of the pooled groups (a permutation test, as mmd.py does) and
  p = (1 + #{T_perm >= T_obs}) / (1 + P), exact at any sample size under exchangeability. Groups of
  different sizes have minima with different nulls: the test compares like with like only when both sides
  have the same group sizes (Flickr8k: five captions per image), which `group_min_scores` reports.
- verdict: drift on a pair when p < alpha / (number of pairs tested) (Bonferroni, like detector.py), so the
  false-alarm rate over all pairs of one drop stays <= alpha.

Suspects: the current rows most out of line, ranked by s_r + (s_r - median of the other rows of the same
item): low similarity, and low against the item's other pairs (a wrong caption among an image's five
stands out even when the image is hard). On the bench drops this ranks shuffled rows ~10 points more
precisely than the similarity alone. Each carries `reference_tail` = (1 + #{reference rows <= s}) /
(1 + n_reference_rows), the share of reference pairs as badly matched, and whatever the caller put in
`rows` (drop, row id, caption, image path) so a person can open them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from mmcl.errors import DataError, UserError
from mmcl.monitor.evidently_drift import l2_normalise

MIN_GROUPS = 20  # fewer groups per side give a p-value resolution too coarse for alpha / pairs


@dataclass(frozen=True)
class AlignmentSettings:
    """Everything that changes a verdict; written into the result."""

    alpha: float = 0.05
    n_permutations: int = 999  # p-value resolution 1/1000: alpha / 3 pairs = 0.0167 needs >= ~100
    seed: int = 0
    min_groups: int = MIN_GROUPS
    top_k: int = 20  # suspects named per pair


@dataclass
class PairedRows:
    """Row-aligned embeddings of one pair of modalities: row r pairs a[r] with b[r].

    groups: item id per row (image id for caption rows); rows: optional per-row facts for suspects
    (e.g. {"drop", "row_id", "caption", "image"}), same length as a.
    """

    a: np.ndarray  # [R, Da]
    b: np.ndarray  # [R, Db], Db == Da (one shared space)
    groups: np.ndarray  # [R]
    rows: list[dict[str, Any]] | None = field(default=None)

    def check(self, source: str) -> None:
        a, b = np.asarray(self.a), np.asarray(self.b)
        if a.ndim != 2 or a.shape != b.shape:
            raise DataError(source, f"paired embeddings must be two [R, D] arrays of one shape, got "
                                    f"{a.shape} and {b.shape}")
        if len(np.asarray(self.groups)) != len(a):
            raise DataError(source, f"{len(self.groups)} group ids for {len(a)} paired rows")
        if self.rows is not None and len(self.rows) != len(a):
            raise DataError(source, f"{len(self.rows)} row descriptions for {len(a)} paired rows")
        bad = ~(np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1))
        if bad.any():
            raise DataError(source, f"embedding row {int(np.flatnonzero(bad)[0])} (0-based) is NaN or infinite")


def paired_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_r, b_r) per row [R] (float64)."""
    return (l2_normalise(np.asarray(a, np.float64)) * l2_normalise(np.asarray(b, np.float64))).sum(axis=1)


def group_min_scores(sims: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group ids [G] sorted, worst pair per group [G], rows per group [G])."""
    ids, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    worst = np.full(len(ids), np.inf)
    np.minimum.at(worst, inverse, sims)
    return ids, worst, counts


def permutation_test(reference: np.ndarray, current: np.ndarray, n_permutations: int,
                     rng: np.random.Generator) -> tuple[float, float]:
    """(T = mean(ref) - mean(cur), one-sided pooled-permutation p-value (1 + k) / (1 + P))."""
    pooled = np.concatenate([reference, current])  # [G]
    m, total = len(reference), pooled.sum()
    observed = reference.mean() - current.mean()
    # T of a labelling depends only on the reference sum: T = s/m - (total - s)/n
    perms = np.argsort(rng.random((n_permutations, len(pooled))), axis=1)[:, :m]  # [P, m] reference rows
    s = pooled[perms].sum(axis=1)  # [P]
    t_perm = s / m - (total - s) / len(current)
    # a tie within round-off counts as "as extreme" (the observed labelling is one of the relabellings)
    exceed = int((t_perm >= observed - 1e-12).sum())
    return float(observed), (1 + exceed) / (1 + n_permutations)


def suspect_scores(sims: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Lower = more out of line: s_r + (s_r - median of the other rows of r's group) [R].

    The second term finds the wrong caption among an image's five even when the image is hard (all of
    its pairs weakly matched); for single-row groups it is 0 and only the similarity itself counts.
    """
    gap = np.zeros_like(sims)
    ids, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(ids) + 1))
    for g in range(len(ids)):
        rows = order[bounds[g]:bounds[g + 1]]
        if len(rows) > 1:
            for i, r in enumerate(rows):
                gap[r] = sims[r] - np.median(np.delete(sims[rows], i))
    return sims + gap


def _suspects(sims_ref: np.ndarray, sims_cur: np.ndarray, pair: PairedRows, top_k: int) -> list[dict]:
    ref_sorted = np.sort(sims_ref)
    order = np.argsort(suspect_scores(sims_cur, pair.groups), kind="stable")[:top_k]
    out = []
    for rank, r in enumerate(order):
        tail = (1 + np.searchsorted(ref_sorted, sims_cur[r], side="right")) / (1 + len(ref_sorted))
        out.append({"row": int(r), "rank": rank + 1, "group": str(pair.groups[r]), "similarity": float(sims_cur[r]),
                    "reference_tail": float(tail), **(pair.rows[r] if pair.rows is not None else {})})
    return out


def pair_alignment_test(reference: PairedRows, current: PairedRows, *, settings: AlignmentSettings, name: str,
              threshold: float, rng: np.random.Generator) -> dict[str, Any]:
    """The alignment test of one pair of modalities (see the module docstring)."""
    sims_ref = paired_similarity(reference.a, reference.b)
    sims_cur = paired_similarity(current.a, current.b)
    _, ref_scores, ref_sizes = group_min_scores(sims_ref, reference.groups)
    _, cur_scores, cur_sizes = group_min_scores(sims_cur, current.groups)
    for label, scores in (("reference", ref_scores), ("current", cur_scores)):
        if len(scores) < settings.min_groups:
            raise DataError(f"{label} {name}", f"only {len(scores)} groups; the alignment test needs at least "
                                               f"{settings.min_groups} per side")
    score, p_value = permutation_test(ref_scores, cur_scores, settings.n_permutations, rng)
    return {
        "pair": name,
        "score": score,
        "score_name": "mean worst-pair cosine, reference minus current",
        "p_value": p_value,
        "threshold": threshold,
        "drift_detected": bool(p_value < threshold),
        "reference_mean_similarity": float(sims_ref.mean()),
        "current_mean_similarity": float(sims_cur.mean()),
        "reference_group_score_mean": float(ref_scores.mean()),
        "current_group_score_mean": float(cur_scores.mean()),
        "n_reference_groups": len(ref_scores),
        "n_current_groups": len(cur_scores),
        "n_reference_rows": len(sims_ref),
        "n_current_rows": len(sims_cur),
        # the minimum over k rows shifts with k: unequal sizes make the groups less exchangeable
        "group_sizes_match": bool(set(np.unique(ref_sizes)) == set(np.unique(cur_sizes))),
        "suspects": _suspects(sims_ref, sims_cur, current, settings.top_k),
        "histogram": _histogram(sims_ref, sims_cur),
    }


def _histogram(sims_ref: np.ndarray, sims_cur: np.ndarray, bins: int = 40) -> dict[str, list[float]]:
    """Shared-edge densities of both sides (what the plot draws; small enough for the JSON)."""
    lo, hi = float(min(sims_ref.min(), sims_cur.min())), float(max(sims_ref.max(), sims_cur.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    return {"edges": edges.tolist(),
            "reference": np.histogram(sims_ref, edges, density=True)[0].tolist(),
            "current": np.histogram(sims_cur, edges, density=True)[0].tolist()}


def alignment_drift(reference: dict[str, PairedRows], current: dict[str, PairedRows], *,
                    settings: AlignmentSettings = AlignmentSettings()) -> dict[str, Any]:
    """Test every pair present on both sides; overall drift when any pair is flagged at alpha / #pairs.

    Args:
        reference, current: {pair name ("text-image"): PairedRows}, embedded by the same model.
        settings: alpha, permutations, seed, minimum groups, suspects per pair.
    Returns:
        {"drift_detected", "alpha", "decision_rule", "test", "pairs": {name: {...}}, "suspects" (all pairs,
        worst first), "settings", "timestamp"}.
    """
    if not 0 < settings.alpha < 1 or settings.n_permutations < 1 or settings.top_k < 0:
        raise UserError("alignment settings: need 0 < alpha < 1, n_permutations >= 1, top_k >= 0")
    names = sorted(set(reference) & set(current))
    if not names:
        raise UserError(f"no pair of modalities on both sides (reference {sorted(reference)}, "
                        f"current {sorted(current)})")
    for name in names:
        reference[name].check(f"reference {name}")
        current[name].check(f"current {name}")
    threshold = settings.alpha / len(names)
    rng = np.random.default_rng(settings.seed)
    pairs = {n: pair_alignment_test(reference[n], current[n], settings=settings, name=n, threshold=threshold, rng=rng)
             for n in names}
    suspects = sorted(({"pair": n, **s} for n in names for s in pairs[n]["suspects"]),
                      key=lambda s: (s["rank"], s["reference_tail"]))  # each pair's worst first
    return {
        "drift_detected": any(p["drift_detected"] for p in pairs.values()),
        "alpha": settings.alpha,
        "decision_rule": f"drift if any pair has p < alpha / {len(names)} = {threshold:g} (Bonferroni)",
        "test": "one-sided pooled permutation test on the mean worst-pair cosine per group, "
                "p = (1 + #{T_perm >= T_obs}) / (1 + P)",
        "pairs": pairs,
        "suspects": suspects[: settings.top_k],
        "settings": asdict(settings),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def pairs_from_embeddings(embeddings: dict[str, tuple[np.ndarray, np.ndarray]],
                          rows: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, PairedRows]:
    """PairedRows for every pair of modalities from per-modality embeddings keyed by item id.

    Args:
        embeddings: {modality: (embeddings [N_m, D], item ids [N_m])}, as `mmcl.train.evaluate.embed_records`
            returns them: text has one row per caption, image and audio one row per item.
        rows: optional {modality: per-row facts} for the suspects (same order as that modality's rows).
    A pair's rows are those of its modality with more rows per item (captions), each paired with the other
    modality's row of the same item; items missing either modality are left out of that pair.
    """
    out: dict[str, PairedRows] = {}
    for m, n in combinations(sorted(embeddings), 2):
        (em, im), (en, in_) = embeddings[m], embeddings[n]
        if len(np.unique(im)) < len(im):  # m has several rows per item: it leads
            lead, other = (m, em, np.asarray(im)), (n, en, np.asarray(in_))
        else:
            lead, other = (n, en, np.asarray(in_)), (m, em, np.asarray(im))
        if len(np.unique(other[2])) < len(other[2]):
            raise UserError(f"pair {m}-{n}: both modalities have several rows per item; pair them explicitly")
        index = {item: i for i, item in enumerate(other[2])}
        keep = np.array([item in index for item in lead[2]], dtype=bool)
        if not keep.any():
            continue
        lead_rows = np.flatnonzero(keep)
        other_rows = np.array([index[item] for item in lead[2][keep]])
        facts = (rows or {}).get(lead[0])
        out[f"{m}-{n}"] = PairedRows(
            a=lead[1][lead_rows], b=other[1][other_rows], groups=lead[2][lead_rows],
            rows=[facts[i] for i in lead_rows] if facts is not None else None)
    return out


def suspects_markdown(suspects: list[dict[str, Any]], limit: int = 10) -> str:
    """The suspects as a Markdown table (Dagster UI metadata, reports)."""
    cols = ["pair", "drop", "row_id", "similarity", "reference_tail", "caption", "image"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in suspects[:limit]:
        cells = []
        for c in cols:
            v = s.get(c, "")
            v = f"{v:.3f}" if isinstance(v, float) else str(v)
            cells.append(v.replace("|", "\\|").replace("\n", " ")[:120])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FACT_FIELDS = ("drop", "row_id", "caption", "image")  # per-row facts stored beside the embeddings


def save_alignment_inputs(path, embeddings: dict[str, tuple[np.ndarray, np.ndarray]],
                          rows: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """One .npz: `<m>` embeddings [N, D], `<m>_ids` item ids, `<m>_<fact>` strings; written atomically."""
    import io

    from mmcl.data.manifest import atomic_write_bytes

    arrays: dict[str, np.ndarray] = {}
    for m, (emb, ids) in embeddings.items():
        arrays[m] = np.asarray(emb, np.float32)
        arrays[f"{m}_ids"] = np.asarray(ids).astype(str)
        for fact in FACT_FIELDS:
            if rows and m in rows:
                arrays[f"{m}_{fact}"] = np.array([str(r.get(fact, "")) for r in rows[m]], dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_alignment_inputs(path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, list[dict]]]:
    """The inverse of `save_alignment_inputs`; never unpickles; errors name the file and the array."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "alignment input file does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # a truncated zip, an object array, a non-npz file: a reason, not a traceback
        raise DataError(path, f"not a readable .npz of plain arrays ({type(exc).__name__}: {exc})") from exc
    modalities = sorted(k for k in arrays if "_" not in k)
    if len(modalities) < 2:
        raise DataError(path, f"needs embeddings of at least two modalities, found {modalities}")
    embeddings, rows = {}, {}
    for m in modalities:
        emb, ids = arrays[m], arrays.get(f"{m}_ids")
        if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.number):
            raise DataError(path, f"array {m!r} must be numeric [N, D], got {emb.dtype} {emb.shape}")
        if ids is None or ids.shape != (len(emb),):
            raise DataError(path, f"array {m}_ids must hold one item id per row of {m!r} ({len(emb)})")
        bad = ~np.isfinite(emb).all(axis=1)
        if bad.any():
            raise DataError(path, f"{m!r} embedding row {int(np.flatnonzero(bad)[0])} (0-based) is NaN or infinite")
        embeddings[m] = (emb.astype(np.float64), ids.astype(str))
        facts = {f: arrays[f"{m}_{f}"] for f in FACT_FIELDS if f"{m}_{f}" in arrays}
        for f, values in facts.items():
            if values.shape != (len(emb),):
                raise DataError(path, f"array {m}_{f} must have one entry per row of {m!r} ({len(emb)})")
        if facts:
            rows[m] = [{f: str(v[i]) for f, v in facts.items()} for i in range(len(emb))]
    return embeddings, rows


def embed_records_for_alignment(model_path, records, *, drop: str | dict[str, str] = "",
                                batch_size: int = 32) -> tuple[dict, dict[str, list[dict[str, Any]]]]:
    """The model's embeddings of FlickrRecord-like items for `pairs_from_embeddings`, with per-row facts.

    Args:
        model_path: mmcl run dir / model.pt / .ckpt (loaded with weights_only=True).
        records: mmcl.data.flickr.FlickrRecord items (image_id = row id of the drop).
        drop: the drop name of every record, or {image_id: drop}.
    Returns:
        ({modality: (embeddings [N, D], item ids [N])}, {modality: [{"drop", "row_id", "caption", "image"}]})
        for the modalities the model has and every record carries (audio only when all records have it).
    """
    import torch

    from mmcl.train.checkpoint import load_model
    from mmcl.train.evaluate import embed_records

    model, config = load_model(model_path)
    modalities = [m for m in ("text", "image", "audio") if m in model.encoders]
    if any(r.audio_path is None for r in records):
        modalities = [m for m in modalities if m != "audio"]
    data = config.get("data", {})
    image = model.encoders["image"] if "image" in model.encoders else None
    with torch.inference_mode():
        emb = embed_records(model, list(records), tuple(modalities),
                            image_transform=image.transform(train=False) if image is not None else None,
                            audio_sample_rate=int(data.get("audio_sample_rate", 16000)),
                            audio_seconds=float(data.get("audio_seconds", 6.0)), batch_size=batch_size,
                            progress=False)

    def drop_of(r) -> str:
        return drop.get(r.image_id, "") if isinstance(drop, dict) else drop

    facts: dict[str, list[dict[str, Any]]] = {}
    for m in modalities:
        if m == "text":
            facts[m] = [{"drop": drop_of(r), "row_id": f"{r.image_id}#{k}", "caption": c, "image": str(r.image_path)}
                        for r in records for k, c in enumerate(r.captions)]
        else:
            kept = [r for r in records if m != "audio" or r.audio_path is not None]
            facts[m] = [{"drop": drop_of(r), "row_id": r.image_id, "caption": r.captions[0] if r.captions else "",
                         "image": str(r.image_path)} for r in kept]
    return emb, facts


def records_of_drop(drop_dir) -> list:
    """FlickrRecord items of a validated drop (manifest rows; media paths resolved inside the drop)."""
    from pathlib import Path

    from mmcl.data.flickr import FlickrRecord
    from mmcl.data.manifest import find_manifest, read_drop
    from mmcl.data.paths import safe_join

    drop_dir = Path(drop_dir)
    manifest = find_manifest(drop_dir)
    records = []
    for row in read_drop(drop_dir).rows:
        fields = row.fields
        captions = tuple(fields.get("captions") or ([fields["caption"]] if fields.get("caption") else []))
        if not captions or not fields.get("image"):
            continue  # a row without a caption or an image has no caption-image pair to test
        audio = fields.get("audio")
        records.append(FlickrRecord(
            image_id=str(fields["id"]), image_path=safe_join(drop_dir, fields["image"], source=manifest),
            captions=captions, audio_path=safe_join(drop_dir, audio, source=manifest) if audio else None,
            transcript=fields.get("transcript"), split=str(fields.get("split", "none"))))
    return records
