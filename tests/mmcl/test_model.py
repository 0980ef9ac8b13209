import torch

from mmcl.config import load_config
from mmcl.model import build_model


def _tiny_model():
    cfg = load_config("configs/tiny.yaml")
    return build_model(cfg.model, ("text", "image", "audio")), cfg


def test_embeddings_are_unit_norm_and_frozen_tower_is_fixed():
    model, _ = _tiny_model()
    model.train()
    inputs = {
        "text": model.encoders["text"].tokenize(["a dog", "two children play in the water"]),
        "image": torch.randn(2, 3, 64, 64),
        "audio": torch.randn(2, 16000),
    }
    out = model(inputs)
    assert set(out) == {"text", "image", "audio"}
    for z in out.values():
        assert z.shape == (2, 32)
        assert torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not model.encoders["image"].training  # frozen towers stay in eval mode
    sum(z.sum() for z in out.values()).backward()
    assert all(p.grad is None for p in model.encoders["image"].parameters())
    assert model.heads["image"].weight.grad is not None
    assert any(p.grad is not None for p in model.encoders["text"].parameters())


def test_subset_of_modalities_and_precomputed_features():
    model, _ = _tiny_model()
    out = model({"image": {"features": torch.randn(4, 1280)}})
    assert list(out) == ["image"] and out["image"].shape == (4, 32)
