"""Alignment drift on real pairs: MiniLM embeddings of Flickr8k captions, the four other captions of an image
paired with its first caption (a real cross-view pair with a real match signal, five rows per item minus one).
Shuffling which image a caption row belongs to leaves both marginals exactly unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mmcl.errors import DataError, UserError
from mmcl.monitor.alignment import (
    AlignmentSettings,
    PairedRows,
    alignment_drift,
    load_alignment_inputs,
    pairs_from_embeddings,
    save_alignment_inputs,
)
from mmcl.monitor.model_change import model_change_by_modality

N_IMAGES = 160


@pytest.fixture(scope="module")
def caption_views():
    """(lead [N_IMAGES*4, 384] captions 1-4, anchor [N_IMAGES, 384] caption 0, image ids [N_IMAGES], texts).

    Cached in .mmcl_cache/monitor keyed by the exact texts (a first run encodes 800 captions, ~15 s)."""
    from mmcl.monitor.sources import encode_texts, load_flickr_captions

    captions, image_ids = load_flickr_captions()
    by_image: dict[str, list[str]] = {}
    for caption, image in zip(captions, image_ids, strict=True):
        by_image.setdefault(image, []).append(caption)
    images = sorted(i for i, c in by_image.items() if len(c) == 5)
    chosen = [images[i] for i in np.random.default_rng(0).choice(len(images), N_IMAGES, replace=False)]
    texts = [c for i in chosen for c in by_image[i]]
    emb = encode_texts(texts, name="test_alignment", show_progress=False).reshape(N_IMAGES, 5, -1)
    return emb[:, 1:].reshape(N_IMAGES * 4, -1), emb[:, 0], np.array(chosen), texts


def _pairs(views, images: np.ndarray, share: float, rng) -> tuple[PairedRows, np.ndarray]:
    """PairedRows of `images` (indices) with `share` of the lead rows moved to other rows; shuffled mask."""
    lead, anchor, ids, _ = views
    rows = (images[:, None] * 4 + np.arange(4)).ravel()
    owner = np.repeat(images, 4)
    chosen = np.sort(rng.choice(len(rows), size=round(share * len(rows)), replace=False))
    source = rows.copy()
    if len(chosen) > 1:
        source[chosen] = rows[np.roll(chosen, 1)]
    shuffled = source // 4 != owner
    facts = [{"drop": "d", "row_id": f"{ids[o]}#{r}"} for o, r in zip(owner, source, strict=True)]
    return PairedRows(a=lead[source], b=anchor[owner], groups=ids[owner], rows=facts), shuffled


def test_same_distribution_splits_rarely_alarm(caption_views):
    alarms, p_values = 0, []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        images = rng.permutation(N_IMAGES)
        ref, _ = _pairs(caption_views, images[:80], 0.0, rng)
        cur, _ = _pairs(caption_views, images[80:], 0.0, rng)
        res = alignment_drift({"text-text": ref}, {"text-text": cur},
                              settings=AlignmentSettings(n_permutations=199, seed=seed))
        alarms += res["drift_detected"]
        p_values.append(res["pairs"]["text-text"]["p_value"])
    assert alarms <= 3, p_values  # alpha = 0.05: P(>= 4 of 20) < 2% under a calibrated test
    assert all(p >= 1 / 200 and abs(p * 200 - round(p * 200)) < 1e-9 for p in p_values)  # (1 + k) / (1 + P)


def test_shuffled_pairs_are_detected_and_named(caption_views):
    rng = np.random.default_rng(1)
    images = rng.permutation(N_IMAGES)
    ref, _ = _pairs(caption_views, images[:80], 0.0, rng)
    cur, shuffled = _pairs(caption_views, images[80:], 0.25, rng)
    res = alignment_drift({"text-text": ref}, {"text-text": cur}, settings=AlignmentSettings(top_k=20))
    pair = res["pairs"]["text-text"]
    assert res["drift_detected"] and pair["p_value"] < pair["threshold"]
    assert pair["current_mean_similarity"] < pair["reference_mean_similarity"]
    top = [s["row"] for s in pair["suspects"]]
    assert shuffled[top].mean() >= 0.7  # most named rows really are shuffled
    assert {"drop", "row_id", "similarity", "reference_tail"} <= set(pair["suspects"][0])
    assert pair["n_current_groups"] == 80 and pair["group_sizes_match"]


def test_pairs_from_embeddings_pairs_by_item_and_skips_missing():
    rng = np.random.default_rng(0)
    text = (rng.normal(size=(6, 4)), np.array(["a", "a", "b", "b", "c", "c"]))
    image = (rng.normal(size=(2, 4)), np.array(["b", "a"]))  # c has no image
    pairs = pairs_from_embeddings({"text": text, "image": image})
    p = pairs["image-text"]
    assert list(p.groups) == ["a", "a", "b", "b"]
    np.testing.assert_array_equal(p.b[0], image[0][1])  # the image of "a"
    np.testing.assert_array_equal(p.a, text[0][:4])
    with pytest.raises(UserError, match="several rows per item"):
        pairs_from_embeddings({"text": text, "audio": text})


def test_bad_inputs_fail_with_a_reason(tmp_path, caption_views):
    rng = np.random.default_rng(2)
    ref, _ = _pairs(caption_views, np.arange(40), 0.0, rng)
    bad = PairedRows(a=ref.a.copy(), b=ref.b, groups=ref.groups)
    bad.a[7, 0] = np.nan
    with pytest.raises(DataError, match="row 7"):
        alignment_drift({"p": ref}, {"p": bad})
    small, _ = _pairs(caption_views, np.arange(40, 50), 0.0, rng)
    with pytest.raises(DataError, match="only 10 groups"):
        alignment_drift({"p": ref}, {"p": small})
    with pytest.raises(UserError, match="no pair"):
        alignment_drift({"p": ref}, {"q": ref})
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_alignment_inputs(junk)
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, text=np.array([{"x": 1}], dtype=object), text_ids=np.array(["a"]))
    with pytest.raises(DataError, match="objects.npz"):
        load_alignment_inputs(pickled)


def _write_inputs(path, views, images, share, rng):
    lead, anchor, ids, _ = views
    pair, shuffled = _pairs(views, images, share, rng)
    save_alignment_inputs(path, {"text": (pair.a, pair.groups), "image": (anchor[images], ids[images])},
                          {"text": pair.rows})
    return shuffled


def test_cli_writes_verdict_and_plot(tmp_path, caption_views):
    rng = np.random.default_rng(3)
    images = rng.permutation(N_IMAGES)
    _write_inputs(tmp_path / "ref.npz", caption_views, images[:80], 0.0, rng)
    _write_inputs(tmp_path / "cur.npz", caption_views, images[80:], 0.25, rng)
    embeddings, rows = load_alignment_inputs(tmp_path / "cur.npz")  # round trip keeps ids and facts
    assert embeddings["text"][0].shape == (320, 384) and rows["text"][0]["drop"] == "d"
    cmd = [sys.executable, "-m", "mmcl", "drift", "alignment", "--reference", str(tmp_path / "ref.npz"),
           "--current", str(tmp_path / "cur.npz"), "--output", str(tmp_path / "out.json"),
           "--plot", str(tmp_path / "out.png"), "--fail-on-drift"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # drift + --fail-on-drift
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["drift_detected"] and (tmp_path / "out.png").stat().st_size > 1000
    assert set(result["pairs"]) == {"image-text"} and result["suspects"][0]["row_id"]


def test_model_change_is_invariant_to_rotation(caption_views):
    lead, anchor, _, _ = caption_views
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(384, 384)))
    change = model_change_by_modality({"text": lead}, {"text": lead @ q, "image": anchor})
    text = change["modalities"]["text"]
    assert change["kind"] == "model_change" and set(change["modalities"]) == {"text"}
    assert text["linear_cka"] == pytest.approx(1.0, abs=1e-6) and text["raw_cosine_mean"] < 0.2
    assert text["cka_shuffled_baseline"] < 0.5
    with pytest.raises(UserError, match="no modality"):
        model_change_by_modality({"text": lead}, {"image": anchor})
