"""Text encoder: any Hugging Face transformer folder (or packaged short name) with a pooling rule.

`reinit_layers=True` keeps the token/position embeddings and re-initialises every transformer layer:
a not-sentence-tuned starting point, since no such checkpoint ships offline.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from mmcl.encoders.hub import resolve_text_model
from mmcl.registry import ENCODERS

POOLINGS = ("cls", "cls_before_pooler", "mean", "first_last_avg")


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # [B, H]


@ENCODERS.register("hf_text")
class TextEncoder(nn.Module):
    modality = "text"

    def __init__(
        self,
        model: str = "all-minilm-l6-v2",
        pooling: str = "mean",
        max_length: int = 32,
        reinit_layers: bool = False,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} not in {POOLINGS}")
        source = resolve_text_model(model)
        local = not isinstance(source, str)
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
        config = AutoConfig.from_pretrained(source)
        if dropout is not None:  # SimCSE's dropout views depend on this rate
            config.hidden_dropout_prob = dropout
            config.attention_probs_dropout_prob = dropout
        self.source = str(source)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.backbone = AutoModel.from_pretrained(source, config=config)
        self.pooling, self.max_length = pooling, max_length
        self.output_dim = int(config.hidden_size)
        if reinit_layers:
            self._reinit_transformer_layers()
        # No pooling here reads BERT's pooler head: frozen, so DDP does not wait for gradients that never
        # come (its weights stay in the state dict, so exports and older checkpoints still match).
        pooler = getattr(self.backbone, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)

    def _reinit_transformer_layers(self) -> None:
        """BERT-style init of everything but the embeddings (std = initializer_range)."""
        std = getattr(self.backbone.config, "initializer_range", 0.02)
        for name, module in self.backbone.named_modules():
            if name.startswith("embeddings"):
                continue
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def prepare(self, texts: list[str]) -> dict[str, Tensor]:
        return self.tokenize(texts)

    def forward(self, tokens: dict[str, Tensor]) -> Tensor:
        want_hidden = self.pooling == "first_last_avg"
        out = self.backbone(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], output_hidden_states=want_hidden
        )
        mask = tokens["attention_mask"]
        if self.pooling in ("cls", "cls_before_pooler"):
            return out.last_hidden_state[:, 0]  # [B, H]
        if self.pooling == "mean":
            return masked_mean(out.last_hidden_state, mask)
        # first_last_avg: hidden_states[0] is the embedding output; [1] is the first transformer layer
        return masked_mean((out.hidden_states[1] + out.hidden_states[-1]) / 2.0, mask)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> Tensor:
        return self(self.tokenize(texts))
