"""Fixtures for the evaluation tests: the packaged MiniLM embedder and small real mmcl checkpoints."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm():
    """all-minilm-l6-v2 through mmcl's sentence-transformers embedder (loaded once per session)."""
    from mmcl.eval.embedders import configure_threads, load_text_embedder

    configure_threads()
    return load_text_embedder("all-minilm-l6-v2", show_progress=False)


def build_checkpoint(path, *, modalities=("text",), pooling="mean", head="linear", embed_dim=64, seed=0):
    """A real mmcl model file (untrained head, seeded) built through the project's config and model code."""
    import torch

    from mmcl.config import config_from_dict
    from mmcl.model import build_model
    from mmcl.train.checkpoint import save_model

    encoders = {"text": {"name": "hf_text", "options": {"model": "all-minilm-l6-v2", "pooling": pooling}}}
    if "image" in modalities:
        encoders["image"] = {"name": "efficientnet_lite0", "freeze": True}
    cfg = config_from_dict(
        {
            "name": "evaltest",
            "data": {"modalities": list(modalities)},
            "model": {"embed_dim": embed_dim, "head": head, "encoders": encoders},
        }
    )
    torch.manual_seed(seed)
    model = build_model(cfg.model, tuple(modalities))
    save_model(model, cfg.to_dict(), path)
    return path


@pytest.fixture(scope="session")
def text_checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")
