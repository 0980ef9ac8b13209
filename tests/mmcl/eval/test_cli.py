"""`mmcl eval retrieval` and `mmcl eval geometry` end to end on real data and a real (untrained) model."""

from __future__ import annotations

import json

import pytest

from mmcl.cli import main

from .conftest import build_checkpoint


def test_retrieval_cli_text_image(tmp_path, data_root):
    ckpt = build_checkpoint(tmp_path / "run" / "model.pt", modalities=("text", "image"))
    out = tmp_path / "ret.json"
    rc = main(
        [
            "eval",
            "retrieval",
            "--model",
            str(ckpt.parent),
            "--pair",
            "text:image",
            "--max-images",
            "6",
            "--data-dir",
            str(data_root),
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert (
        result["text2image/n_queries"] == 30 and result["image2text/n_queries"] == 6
    )  # 5 captions per image
    for key in ("text2image/R@1", "image2text/R@10", "text2image/MAP", "image2text/MRR"):
        assert 0.0 <= result[key] <= 100.0
    assert result["text2image/R@10"] == 100.0  # a gallery of 6 images is entirely inside the top 10
    assert 1.0 <= result["text2image/medR"] <= 6.0
    assert result["rsum"] == pytest.approx(result["text2image/rsum"] + result["image2text/rsum"])
    assert "| text2image |" in out.with_suffix(".md").read_text()


def test_retrieval_cli_refuses_a_missing_tower(text_checkpoint, tmp_path, capsys):
    rc = main(
        [
            "eval",
            "retrieval",
            "--model",
            str(text_checkpoint),
            "--pair",
            "text:audio",
            "--max-images",
            "2",
            "--output",
            str(tmp_path / "r.json"),
        ]
    )
    assert rc == 2 and "has no audio tower" in capsys.readouterr().err


def test_geometry_cli(tmp_path, data_root):
    out = tmp_path / "geo.json"
    rc = main(
        [
            "eval",
            "geometry",
            "--model",
            "all-minilm-l6-v2",
            "--data-dir",
            str(data_root),
            "--split",
            "dev",
            "--max-pairs",
            "300",
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert 0.0 < result["alignment"] < 2.0 and -4.0 < result["uniformity"] < 0.0
    assert result["details"]["positive_pairs"] == 50  # STS-B dev pairs 1-300 with gold > 4
