"""Teacher embeddings: fingerprint, .npy cache per dataset version, packaged MiniLM, open_clip checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmcl.errors import DataError
from mmcl.objectives.teacher import (
    TeacherTable,
    cached_teacher_embeddings,
    dataset_fingerprint,
    open_clip_encoders,
    sentence_encoder,
)


class CountingEncoder:
    """A deterministic text -> vector map that records how many items it was asked to encode."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        return np.stack([np.array([len(t), t.count("a") + 1, ord(t[0])], dtype=np.float64) for t in texts])


def test_fingerprint_is_order_free_and_content_sensitive():
    ids, texts = ["b", "a", "c"], ["two", "one", "three"]
    fp = dataset_fingerprint(ids, texts)
    assert fp == dataset_fingerprint(ids[::-1], texts[::-1])
    assert fp != dataset_fingerprint(ids, ["two", "one", "three!"])
    assert fp != dataset_fingerprint(["a", "bc"], ["x", "y"]) and len(fp) == 64
    assert dataset_fingerprint(["a", "bc"], ["x", "y"]) != dataset_fingerprint(["ab", "c"], ["x", "y"])


def test_cache_is_computed_once_and_rows_follow_ids(tmp_path):
    ids, texts = ["s2", "s1", "s3"], ["a cat", "dogs bark", "banana"]
    enc = CountingEncoder()
    first = cached_teacher_embeddings(ids, texts, enc, name="toy", cache_dir=tmp_path, progress=False)
    assert enc.calls == 3 and first.shape == (3, 3) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)
    expected = enc(["a cat"])[0]
    assert np.allclose(first[0], expected / np.linalg.norm(expected))  # row 0 is id "s2"
    again = cached_teacher_embeddings(
        ids[::-1], texts[::-1], enc, name="toy", cache_dir=tmp_path, progress=False
    )
    assert enc.calls == 4 and np.allclose(again, first[::-1])  # cache hit in another order
    assert len(list(tmp_path.glob("toy-*.npy"))) == 1
    cached_teacher_embeddings(
        ids, ["a cat", "dogs bark", "bananas"], enc, name="toy", cache_dir=tmp_path, progress=False
    )
    assert len(list(tmp_path.glob("toy-*.npy"))) == 2  # a new dataset version gets a new file


def test_corrupt_cache_names_the_file(tmp_path):
    cached_teacher_embeddings(
        ["x", "y"], ["a", "b"], CountingEncoder(), name="toy", cache_dir=tmp_path, progress=False
    )
    (path,) = tmp_path.glob("toy-*.npy")
    np.save(path, np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(DataError, match=path.name):
        cached_teacher_embeddings(
            ["x", "y"], ["a", "b"], CountingEncoder(), name="toy", cache_dir=tmp_path, progress=False
        )


def test_teacher_table_lookup():
    table = TeacherTable(["a", "b", "c"], np.eye(3, dtype=np.float32))
    assert torch.equal(table(["c", "a"]), torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    with pytest.raises(KeyError, match="zz"):
        table(["a", "zz"])


def test_packaged_minilm_teacher_gives_meaningful_similarities(tmp_path):
    encode = sentence_encoder("all-minilm-l6-v2")
    texts = [
        "A dog runs on the beach.",
        "A puppy is running along the sand.",
        "The stock market fell sharply today.",
    ]
    emb = cached_teacher_embeddings(
        ["1", "2", "3"], texts, encode, name="minilm", cache_dir=tmp_path, progress=False
    )
    assert emb.shape == (3, 384)
    alpha = emb @ emb.T
    assert alpha[0, 1] > 0.5 > alpha[0, 2]  # paraphrase vs unrelated: α drives KDMCSE's margin and filter


def test_open_clip_teacher_loads_the_checkpoint(tmp_path):
    import open_clip

    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mmcl-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    model = open_clip.create_model("mmcl-tiny-clip")
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    for i, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{i}.png")

    encode_text, encode_image = open_clip_encoders("mmcl-tiny-clip", tmp_path / "tiny.pt")
    zt = encode_text(["a dog", "a cat"])
    zi = encode_image([str(tmp_path / "0.png"), str(tmp_path / "1.png")])
    assert zt.shape == (2, 16) and zi.shape == (2, 16)
    assert torch.allclose(zt.norm(dim=-1), torch.ones(2), atol=1e-5)
    with torch.no_grad():  # the checkpoint's weights, not a fresh random init
        want = model.encode_text(
            open_clip.get_tokenizer("mmcl-tiny-clip")(["a dog", "a cat"]), normalize=True
        )
    assert torch.allclose(zt, want, atol=1e-5)
