"""Unlabeled text corpus for the text-only batches of SimCSE / MCSE / KDMCSE.

    sentences = load_text_corpus(("flickr8k_captions", "senteval_transfer"), exclude_images=held_out_ids)
    dataset = TextCorpusDataset(sentences)

Sources: the 40,460 official Flickr8k captions (all 8,000 images) and every sentence of the SentEval
transfer tasks (labels dropped). Sentences are whitespace-normalised and de-duplicated in first-seen
order, so the corpus (and its fingerprint) is the same in every process. Captions of held-out images are
left out: a retrieval test image's captions must not be trained on, even as text alone.

Relations: the papers use Wiki1M (SimCSE) + Flickr30k/COCO captions (MCSE, KDMCSE); this is the
offline stand-in. The SentEval sentences include the transfer tasks' test splits (see
mmcl.data.senteval.load_transfer_corpus), so transfer scores of a model trained on it are optimistic;
the STS sets are not part of it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mmcl.data.flickr import read_caption_tokens
from mmcl.data.senteval import load_transfer_corpus, normalize_sentence

CORPUS_SOURCES = ("flickr8k_captions", "senteval_transfer")


def flickr_captions_by_image(data_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """(image file name, caption) for every line of Flickr8k.token.txt (the parser lives in data/flickr.py)."""
    return read_caption_tokens(data_dir)


def _image_key(name: str) -> str:
    """'1000268201_693b08cb0e.jpg' and '1000268201_693b08cb0e' name the same image."""
    return name.rsplit(".", 1)[0] if name.lower().endswith((".jpg", ".jpeg")) else name


def load_text_corpus(
    sources: Sequence[str] = CORPUS_SOURCES,
    data_dir: str | Path | None = None,
    exclude_images: Collection[str] = (),
) -> list[str]:
    """De-duplicated sentences of `sources`, in a fixed order; captions of `exclude_images` dropped.

    Args:
        sources: names among CORPUS_SOURCES.
        exclude_images: image ids or file names whose captions stay out (held-out retrieval images).
    """
    excluded = {_image_key(i) for i in exclude_images}
    seen: dict[str, None] = {}
    for source in sources:
        if source == "flickr8k_captions":
            texts = (
                c for image, c in flickr_captions_by_image(data_dir) if _image_key(image) not in excluded
            )
        elif source == "senteval_transfer":
            texts = iter(load_transfer_corpus(data_dir))
        else:
            raise ValueError(f"unknown text corpus source {source!r}; expected some of {CORPUS_SOURCES}")
        for text in texts:
            sentence = normalize_sentence(text)
            if sentence:
                seen.setdefault(sentence, None)
    return list(seen)


class TextCorpusDataset(Dataset):
    """Items {"index", "id", "text"} over a list of sentences; ids are "corpus:<index>".

    Like TripleDataset, a key may carry the epoch (epoch * len + index), so the resumable samplers work.
    """

    def __init__(self, sentences: Sequence[str]) -> None:
        if not sentences:
            raise ValueError("TextCorpusDataset: the text corpus is empty")
        self.sentences = list(sentences)

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, key: int) -> dict[str, Any]:
        i = key % len(self.sentences)
        return {"index": i, "id": f"corpus:{i}", "text": self.sentences[i]}
