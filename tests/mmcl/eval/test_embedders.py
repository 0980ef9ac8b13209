"""`--model` resolution and the embedders' fast path (dedup, order, pooling, checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest

from mmcl.errors import UserError
from mmcl.eval.embedders import (
    CheckpointEmbedder,
    HuggingFaceEmbedder,
    SentenceTransformerEmbedder,
    load_text_embedder,
)

SENTENCES = [
    "a man is playing a guitar .",
    "two dogs run across a snowy field .",
    "hello",
    "a man is playing a guitar .",
]


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_packaged_name_gives_sentence_transformers_embedder(minilm):
    assert isinstance(minilm, SentenceTransformerEmbedder) and minilm.describe()["name"] == "all-minilm-l6-v2"
    emb = minilm.encode(SENTENCES)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb[0], emb[3])  # duplicates share one encoding
    np.testing.assert_allclose(
        minilm.encode(SENTENCES[1::-1]), emb[1::-1], atol=1e-5
    )  # order follows the input
    np.testing.assert_allclose(emb, minilm.model.encode(SENTENCES), atol=1e-5)


def test_pooling_override_runs_the_bare_backbone(minilm):
    mean = load_text_embedder("all-minilm-l6-v2", pooling="mean", show_progress=False)
    assert isinstance(mean, HuggingFaceEmbedder) and mean.encoder.max_length == 512
    # the packaged model is mean pooling + Normalize: the bare backbone with mean pooling agrees up to norm
    np.testing.assert_allclose(_unit(mean.encode(SENTENCES)), minilm.encode(SENTENCES), atol=1e-5)
    cls = load_text_embedder("all-minilm-l6-v2", pooling="cls", show_progress=False).encode(SENTENCES[:2])
    assert not np.allclose(_unit(cls), minilm.encode(SENTENCES[:2]), atol=1e-2)


def test_checkpoint_text_tower(text_checkpoint, minilm):
    emb = load_text_embedder(str(text_checkpoint), show_progress=False)
    assert isinstance(emb, CheckpointEmbedder) and emb.describe()["max_length"] == 512
    z = emb.encode(SENTENCES)
    assert z.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)  # model.encode is unit norm
    raw = load_text_embedder(str(text_checkpoint.parent), use_head=False, show_progress=False)  # run dir
    np.testing.assert_allclose(_unit(raw.encode(SENTENCES)), minilm.encode(SENTENCES), atol=1e-5)


def test_resolution_errors(tmp_path):
    with pytest.raises(UserError, match="is not an existing path nor a packaged model"):
        load_text_embedder(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="neither an mmcl run dir/checkpoint"):
        load_text_embedder(str(tmp_path))
    with pytest.raises(UserError, match="--pooling 'max' is not one of"):
        load_text_embedder("all-minilm-l6-v2", pooling="max")


def test_default_threads_is_every_core_whatever_the_load_average(monkeypatch):
    """The 1-minute load average lags by minutes: right after a job it no longer means busy cores."""
    import os

    from mmcl.eval.embedders import configure_threads, default_threads

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))  # what a finished job leaves behind
    assert default_threads() == cores and default_threads("3") == 3 and default_threads(1) == 1
    before = __import__("torch").get_num_threads()
    try:
        assert configure_threads() == cores
    finally:
        __import__("torch").set_num_threads(before)


@pytest.mark.parametrize("bad", ["0", "-2", "fast", 0, 1.5, True])
def test_threads_must_be_a_positive_integer_or_polite(bad):
    from mmcl.eval.embedders import default_threads

    with pytest.raises(UserError, match=r"--threads .*: expected a positive integer or 'polite'"):
        default_threads(bad)


def test_polite_threads_measure_contention_now():
    """A spinning process keeps one core busy at this moment: /proc/stat shows it within 0.2 s, and the
    polite mode leaves that core to it (the load average would still say 0 for a minute)."""
    import os
    import subprocess
    import sys

    from mmcl.eval.embedders import busy_cores, default_threads

    cores = len(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 20\nwhile time.time() < t: pass"])
    try:
        __import__("time").sleep(0.3)  # started and scheduled
        assert busy_cores(0.2) >= 0.5
        polite = default_threads("polite")
        assert 1 <= polite <= max(1, cores - 1)
    finally:
        spinner.kill()
        spinner.wait()
