"""The unlabeled text corpus: sources, de-duplication, held-out captions left out."""

from __future__ import annotations

import pytest

from mmcl.data.senteval import normalize_sentence
from mmcl.data.text_corpus import TextCorpusDataset, flickr_captions_by_image, load_text_corpus


def test_flickr_corpus_drops_held_out_images_and_duplicates(data_root, flickr_records):
    held = [r for r in flickr_records if r.split == "test"]
    corpus = load_text_corpus(("flickr8k_captions",), data_root, exclude_images={r.image_id for r in held})
    assert len(corpus) == len(set(corpus)) > 30_000
    held_only = {normalize_sentence(c) for r in held for c in r.captions}
    kept_by_others = {
        normalize_sentence(c)
        for img, c in flickr_captions_by_image(data_root)
        if img.rsplit(".", 1)[0] not in {r.image_id for r in held}
    }
    assert not (held_only - kept_by_others) & set(corpus)  # no caption seen only on a held-out image
    assert (
        load_text_corpus(("flickr8k_captions",), data_root, exclude_images={r.image_id for r in held})
        == corpus
    )


def test_two_sources_and_dataset_items(data_root):
    both = load_text_corpus(("flickr8k_captions", "senteval_transfer"), data_root)
    captions = load_text_corpus(("flickr8k_captions",), data_root)
    assert len(both) > len(captions) + 50_000 and both[: len(captions)] == captions
    ds = TextCorpusDataset(both)
    assert ds[len(both) + 5] == {"index": 5, "id": "corpus:5", "text": both[5]}  # epoch-carrying keys wrap
    with pytest.raises(ValueError):
        load_text_corpus(("wiki1m",), data_root)
