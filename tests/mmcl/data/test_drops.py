"""The drop simulator on the real Flickr8k triples and SentEval MR sentences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mmcl.data.drops import read_mr_sentences, simulate_drops, simulate_shifted_drop
from mmcl.data.manifest import read_drop, sha256_file
from mmcl.errors import UserError


def manifest(drop) -> list[dict]:
    return [json.loads(line) for line in (drop / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def test_clean_drops_cut_the_triples_deterministically(tmp_path, flickr_records):
    drops = simulate_drops(tmp_path / "a", n_drops=3, per_drop=6, seed=1)
    assert [d.name for d in drops] == ["drop-0001", "drop-0002", "drop-0003"]
    records = [manifest(d) for d in drops]
    ids = [r["id"] for drop in records for r in drop]
    assert len(ids) == len(set(ids)) == 18  # no triple in two drops
    by_id = {r.image_id: r for r in flickr_records}
    for drop, rows in zip(drops, records, strict=True):
        assert not any(r.errors for r in read_drop(drop).rows)
        for row in rows:
            source = by_id[row["id"]]
            assert row["captions"] == list(source.captions) and row["caption"] == source.captions[0]
            assert row["split"] == source.split and row["source_drop"] == drop.name
            assert sha256_file(drop / row["image"]) == row["image_sha256"] == sha256_file(source.image_path)
            assert sha256_file(drop / row["audio"]) == row["audio_sha256"]
            assert row["features"]["image_width"] == Image.open(source.image_path).width
    # a drop written later (start=3) holds the same records as in the full run
    (later,) = simulate_drops(tmp_path / "b", n_drops=3, per_drop=6, seed=1, start=3)
    assert manifest(later) == records[2]
    assert json.loads((later / "drop.json").read_text())["kind"] == "clean"
    with pytest.raises(UserError, match="already exists"):
        simulate_drops(tmp_path / "b", n_drops=3, per_drop=6, seed=1, start=3)
    with pytest.raises(UserError, match="only 1000 exist"):
        simulate_drops(tmp_path / "c", n_drops=3, per_drop=400)


def _sharpness(path) -> float:
    """Variance of the Laplacian-like edge response: blur lowers it."""
    grey = Image.open(path).convert("L").filter(ImageFilter.FIND_EDGES)
    return float(np.asarray(grey, dtype=np.float32).var())


def test_shifted_drop_replaces_captions_and_corrupts_images(tmp_path, flickr_records):
    blurred = simulate_shifted_drop(tmp_path, "shift-blur", records=12, caption_fraction=0.5,
                                    corruption="blur", level=0.6, seed=3)
    meta = json.loads((blurred / "drop.json").read_text())
    rows = manifest(blurred)
    by_id = {r.image_id: r for r in flickr_records}
    mr = set(read_mr_sentences())
    replaced = {r["id"] for r in rows if r["caption"] in mr}
    assert replaced == set(meta["replaced_caption_ids"]) and len(replaced) == 6
    for row in rows:
        source = by_id[row["group"]]
        assert row["id"] == f"{row['group']}-shift-blur" and row["split"] == source.split
        if row["id"] in replaced:
            assert all(c in mr for c in row["captions"]) and row["caption"] not in source.captions
        else:
            assert row["captions"] == list(source.captions)
        assert _sharpness(blurred / row["image"]) < 0.5 * _sharpness(source.image_path)
    noisy = simulate_shifted_drop(tmp_path, "shift-noise", records=4, caption_fraction=0.0,
                                  corruption="noise", level=0.5, seed=3)
    for row in manifest(noisy):
        original = np.asarray(Image.open(by_id[row["group"]].image_path).convert("RGB"), dtype=np.float32)
        corrupted = np.asarray(Image.open(noisy / row["image"]), dtype=np.float32)
        assert corrupted.shape == original.shape and 20 < np.abs(corrupted - original).mean() < 60
    with pytest.raises(UserError, match="corruption"):
        simulate_shifted_drop(tmp_path, "shift-bad", corruption="pixelate")


def test_topic_shift_keeps_real_captions(tmp_path):
    """A topic shift: only triples about the topic, each with its own captions (pairs stay aligned)."""
    from mmcl.data.flickr import load_flickr_triples

    drop = simulate_shifted_drop(tmp_path, "shift-dog", records=10, caption_fraction=0.0, corruption=None, topic="dog")
    rows = [json.loads(line) for line in (drop / "manifest.jsonl").read_text().splitlines()]
    truth = {r.image_id: r.captions for r in load_flickr_triples()}
    assert len(rows) == 10
    for row in rows:
        assert any("dog" in c.lower().split() for c in row["captions"])
        assert tuple(row["captions"]) == tuple(truth[row["group"]])  # the image's own captions
