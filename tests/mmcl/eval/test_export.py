"""Export: the sentence-transformers folder loads in plain sentence-transformers and scores like the checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmcl.errors import UserError
from mmcl.eval.embedders import load_text_embedder
from mmcl.eval.export import export_open_clip, export_sentence_transformers
from mmcl.eval.sts import StsEvaluator

from .conftest import build_checkpoint


def test_exported_model_gives_the_checkpoints_sts_numbers(text_checkpoint, tmp_path, data_root):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "st"
    summary = export_sentence_transformers(text_checkpoint, out)
    assert summary["dimension"] == 64 and summary["probe_max_abs_diff"] < 1e-4
    assert json.loads((out / "mmcl_export.json").read_text())["pooling"] == "mean"
    plain = SentenceTransformer(str(out), device="cpu")
    ckpt = load_text_embedder(str(text_checkpoint), show_progress=False)
    sentences = ["a woman is slicing an onion .", "a man plays the flute ."]
    np.testing.assert_allclose(plain.encode(sentences), ckpt.encode(sentences), atol=1e-5)
    evaluator = StsEvaluator(("stsb",), data_root, max_pairs=100)
    from_checkpoint = evaluator(ckpt)["stsb"]
    from_export = evaluator(load_text_embedder(str(out), show_progress=False))["stsb"]
    assert from_export == pytest.approx(from_checkpoint, abs=0.01)


def test_first_last_avg_and_mlp_head_export(tmp_path):
    from sentence_transformers import SentenceTransformer

    ckpt = build_checkpoint(tmp_path / "m.pt", pooling="first_last_avg", head="mlp", embed_dim=32, seed=1)
    summary = export_sentence_transformers(ckpt, tmp_path / "st")  # raises if the probes disagree
    assert summary["probe_max_abs_diff"] < 1e-4 and summary["dimension"] == 32
    modules = [type(m).__name__ for m in SentenceTransformer(str(tmp_path / "st"), device="cpu")]
    assert modules == ["Transformer", "WeightedLayerPooling", "Pooling", "Dense", "Dense", "Normalize"]


def test_export_refusals(text_checkpoint, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(UserError, match="is not empty"):
        export_sentence_transformers(text_checkpoint, tmp_path / "busy")
    with pytest.raises(UserError, match="needs open_clip image and text towers"):
        export_open_clip(text_checkpoint, tmp_path / "oc")


def test_open_clip_export_reloads_through_open_clip(tmp_path):
    """Small open_clip towers (ViT-S-32-alt, random init offline) with mmcl's linear heads folded in."""
    import torch

    from mmcl.config import config_from_dict
    from mmcl.model import build_model
    from mmcl.train.checkpoint import save_model

    arch = {"arch": "ViT-S-32-alt"}
    cfg = config_from_dict(
        {
            "data": {"modalities": ["text", "image"]},
            "model": {
                "embed_dim": 48,
                "encoders": {
                    "text": {"name": "open_clip_text", "options": arch},
                    "image": {"name": "open_clip_image", "options": arch},
                },
            },
        }
    )
    torch.manual_seed(0)
    save_model(build_model(cfg.model, ("text", "image")), cfg.to_dict(), tmp_path / "model.pt")
    summary = export_open_clip(tmp_path, tmp_path / "oc")  # reloads with open_clip and compares on probes
    assert summary["embed_dim"] == 48 and summary["probe_max_abs_diff"] < 1e-4
    assert (tmp_path / "oc" / "open_clip_pytorch_model.bin").is_file()
