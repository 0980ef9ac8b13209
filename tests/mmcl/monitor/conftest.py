"""Real MiniLM embeddings shared by the monitor tests (encoded once per session, ~10 s on 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest

N_CAPTIONS = 480  # one caption per image, so rows are independent samples
N_MR = 240


@pytest.fixture(scope="session")
def text_sets() -> dict[str, np.ndarray]:
    """{"captions": [480, 384], "mr": [240, 384]} real all-MiniLM-L6-v2 embeddings (unit norm)."""
    from mmcl.monitor.sources import encode_texts, load_flickr_captions, load_mr_sentences

    captions, image_ids = load_flickr_captions()
    first_per_image: dict[str, str] = {}
    for caption, image in zip(captions, image_ids, strict=True):
        first_per_image.setdefault(image, caption)
    rng = np.random.default_rng(0)
    images = sorted(first_per_image)
    chosen = [first_per_image[images[i]] for i in rng.choice(len(images), N_CAPTIONS, replace=False)]
    mr = load_mr_sentences()
    mr_chosen = [mr[i] for i in rng.choice(len(mr), N_MR, replace=False)]
    emb = encode_texts(chosen + mr_chosen, name="test_monitor", cache=False, show_progress=False)
    return {"captions": emb[:N_CAPTIONS], "mr": emb[N_CAPTIONS:]}


@pytest.fixture(scope="session")
def null_pair(text_sets):
    """null_pair(n, rng) -> two disjoint random draws of n captions: a same-distribution pair."""
    return lambda n, rng: _null_split(text_sets["captions"], n, rng)


@pytest.fixture(scope="session")
def shifted_pair(text_sets):
    """shifted_pair(n, fraction, rng) -> (captions, captions with `fraction` replaced by MR sentences)."""
    return lambda n, fraction, rng: _shifted(text_sets, n, fraction, rng)


def _null_split(pool: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random draws of n rows from one pool: a same-distribution pair."""
    idx = rng.permutation(len(pool))
    return pool[idx[:n]], pool[idx[n : 2 * n]]


def _shifted(sets: dict, n: int, fraction: float, rng: np.random.Generator):
    """Reference: n captions; current: captions with `fraction` of rows replaced by MR sentences."""
    idx = rng.permutation(len(sets["captions"]))
    n_mr = int(round(fraction * n))
    ref = sets["captions"][idx[:n]]
    cur = np.vstack(
        [
            sets["captions"][idx[n : 2 * n - n_mr]],
            sets["mr"][rng.choice(len(sets["mr"]), n_mr, replace=False)],
        ]
    )
    return ref, cur


@pytest.fixture(scope="session")
def grouped_captions() -> tuple[np.ndarray, np.ndarray]:
    """All five captions of 80 images: ([400, 384] MiniLM embeddings, [400] image ids)."""
    from mmcl.monitor.sources import encode_texts, load_flickr_captions

    captions, image_ids = load_flickr_captions()
    images = sorted(set(image_ids))
    chosen = set(np.random.default_rng(1).choice(len(images), 80, replace=False).tolist())
    wanted = {images[i] for i in chosen}
    keep = [i for i, image in enumerate(image_ids) if image in wanted]
    emb = encode_texts([captions[i] for i in keep], name="test_grouped", cache=False, show_progress=False)
    return emb, np.array([image_ids[i] for i in keep])
