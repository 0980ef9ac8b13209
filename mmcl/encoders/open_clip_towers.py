"""open_clip vision and text towers by architecture name.

Offline the architectures build with random weights (`pretrained=None`); real CLIP weights load from a
checkpoint path the user gives (`pretrained=/path/open_clip_pytorch_model.bin`), or, online, from an
open_clip pretrained tag such as `openai` or `laion2b_s34b_b79k`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcl.registry import ENCODERS


def _create(arch: str, pretrained: str | None):
    import open_clip

    model = open_clip.create_model(arch, pretrained=pretrained, device="cpu")
    return model


@ENCODERS.register("open_clip_image")
class OpenClipImageEncoder(nn.Module):
    modality = "image"

    def __init__(self, arch: str = "ViT-B-32", pretrained: str | None = None, image_size: int | None = None) -> None:
        super().__init__()
        model = _create(arch, pretrained)
        self.arch, self.pretrained = arch, pretrained
        self.visual = model.visual
        self.output_dim = int(model.visual.output_dim)
        size = model.visual.image_size
        self.image_size = image_size or (size[0] if isinstance(size, (tuple, list)) else int(size))
        self.mean = getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        self.std = getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)

    def transform(self, train: bool = False):
        from mmcl.encoders.efficientnet import image_transform

        return image_transform(self.image_size, self.mean, self.std, train)

    def forward(self, images: Tensor) -> Tensor:
        return self.visual(images)  # [B, D] (already projected by the tower)


@ENCODERS.register("open_clip_text")
class OpenClipTextEncoder(nn.Module):
    modality = "text"

    def __init__(self, arch: str = "ViT-B-32", pretrained: str | None = None) -> None:
        super().__init__()
        import open_clip

        model = _create(arch, pretrained)
        self.arch, self.pretrained = arch, pretrained
        self._tokenizer = open_clip.get_tokenizer(arch)
        # keep only the text tower's parts; the visual tower is dropped to save memory
        self.token_embedding = model.token_embedding
        self.positional_embedding = model.positional_embedding
        self.transformer = model.transformer
        self.ln_final = model.ln_final
        self.text_projection = model.text_projection
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)
        self.text_pool_type = getattr(model, "text_pool_type", "argmax")
        self.text_eos_id = getattr(model, "text_eos_id", None)
        proj = model.text_projection
        self.output_dim = int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])
        self._encode = model.__class__.encode_text  # open_clip's own forward for the text tower

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        ids = self._tokenizer(list(texts))  # [B, 77]
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    def prepare(self, texts: list[str]) -> dict[str, Tensor]:
        return self.tokenize(texts)

    def forward(self, tokens: dict[str, Tensor]) -> Tensor:
        return self._encode(self, tokens["input_ids"])  # [B, D]

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> Tensor:
        return self(self.tokenize(texts))
