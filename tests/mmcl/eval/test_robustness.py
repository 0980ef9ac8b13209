"""`mmcl eval robustness` on a real (seeded, untrained) tri-modal model and the real Flickr8k test images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmcl.eval.retrieval import retrieval_metrics
from mmcl.eval.robustness import (
    CORRUPTIONS,
    RobustnessEvaluator,
    add_noise_snr,
    add_typos,
    chance_at_k,
    change_speed,
    drop_words,
)


def test_text_and_speech_corruptions_are_seeded_and_graded():
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    text = "a black dog runs across the green field"
    assert drop_words(text, 0.0, rng()) == text and add_typos(text, 0.0, rng()) == text
    assert drop_words(text, 0.5, rng()) == drop_words(text, 0.5, rng())  # same seed, same corruption
    assert len(drop_words(text, 1.0, rng()).split()) == 1  # never empty: one word stays
    typo = add_typos(text, 1.0, rng())
    assert typo != text and len(typo.split()) == len(text.split())
    wave = np.sin(np.linspace(0, 200, 16000)).astype(np.float32)
    noisy = add_noise_snr(wave, 0.0, rng())
    assert np.mean((noisy - wave) ** 2) == pytest.approx(np.mean(wave**2), rel=0.05)  # 0 dB: noise power = signal
    assert add_noise_snr(wave, np.inf, rng()) is wave
    assert len(change_speed(wave, 2.0)) == 8000 and change_speed(wave, 1.0) is wave


def test_chance_matches_the_closed_form():
    gallery = np.array(["a"] * 5 + ["b"] * 5 + [f"x{i}" for i in range(10)])
    assert chance_at_k(np.array(["a"]), gallery) == pytest.approx(100 * (1 - 1 / 15504 * 3003), rel=1e-9)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from mmcl.train.checkpoint import load_model
    from tests.mmcl.index.conftest import tiny_model_file

    run = tiny_model_file(tmp_path_factory.mktemp("robust"), seed=0)
    return run, *load_model(run)


def test_curves_start_clean_with_intervals_and_chance(tiny_model):
    run, model, config = tiny_model
    names = ["image_jpeg", "caption_typos", "speech_noise", "missing_text"]
    evaluator = RobustnessEvaluator("test", max_images=8, corruptions=names, n_boot=200, batch_size=16)
    result = evaluator(model, config)
    assert list(result["curves"]) == names
    for name, curve in result["curves"].items():
        assert [p["level"] for p in curve["points"]][1:] == [float(x) for x in CORRUPTIONS[name].levels[1:]]
        for p in curve["points"]:
            assert p["ci_low"] <= p["R@5"] <= p["ci_high"], (name, p)
        assert 0 < curve["chance_R@5"] < 100
    # the clean point of each single-modality curve is mmcl.eval.retrieval's R@5 of the clean queries
    from mmcl.train.evaluate import embed_records

    emb = embed_records(model, evaluator.records, ("text", "image"), image_transform=model.encoders["image"].transform(),
                        progress=False)
    expected = retrieval_metrics(emb["text"][0], emb["image"][0], emb["text"][1], emb["image"][1])["R@5"]
    assert result["curves"]["caption_typos"]["points"][0]["R@5"] == pytest.approx(expected)
    # a fused query with every caption missing is the clean speech-only query
    assert result["curves"]["missing_text"]["points"][-1]["R@5"] == pytest.approx(
        result["curves"]["speech_noise"]["points"][0]["R@5"])


def test_cli_writes_json_markdown_and_png(tiny_model, tmp_path, capsys):
    from mmcl.cli import main

    run, _, _ = tiny_model
    out = tmp_path / "robust.json"
    assert main(["eval", "robustness", "--model", str(run), "--max-images", "6", "--corruptions", "image_blur",
                 "caption_word_drop", "--bootstrap", "50", "--threads", "1", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["curves"]) == {"image_blur", "caption_word_drop"}
    assert out.with_suffix(".png").stat().st_size > 10_000 and "caption_word_drop" in out.with_suffix(".md").read_text()
    assert main(["eval", "robustness", "--model", str(run), "--corruptions", "fog", "--output", str(out)]) == 2
    assert "unknown corruption(s) ['fog']" in capsys.readouterr().err
