"""The N-modality model: {modality: encoder} -> {modality: L2-normalised embedding [B, D]}.

Each modality has an encoder (its own width) and a projection head into the shared width D. Frozen
encoders run in eval mode under no_grad, so only their heads train and their batch-norm statistics
stay those of pretraining.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.config import ModelConfig
from mmcl.encoders import ENCODERS, build_head


class MultiModalModel(nn.Module):
    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        embed_dim: int = 256,
        head: str = "linear",
        temperature_init: float = 0.07,
        learnable_temperature: bool = True,
        frozen: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.heads = nn.ModuleDict({m: build_head(head, enc.output_dim, embed_dim) for m, enc in encoders.items()})
        self.embed_dim = embed_dim
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)), requires_grad=learnable_temperature)
        self.frozen = set(frozen)
        for m in self.frozen:
            self.encoders[m].requires_grad_(False)

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def train(self, mode: bool = True) -> MultiModalModel:
        super().train(mode)
        for m in self.frozen:  # frozen towers keep their pretraining batch-norm statistics
            self.encoders[m].eval()
        return self

    def features(self, modality: str, inputs: Any) -> Tensor:
        """Encoder output before the head: [B, H_m]. `{"features": [B, H_m]}` skips a frozen encoder."""
        if isinstance(inputs, dict) and "features" in inputs:
            if modality not in self.frozen:
                raise ValueError(f"precomputed features given for trainable encoder {modality!r}")
            return inputs["features"]
        encoder = self.encoders[modality]
        if modality in self.frozen:
            with torch.no_grad():
                return encoder(inputs)
        return encoder(inputs)

    def encode(self, modality: str, inputs: Any) -> Tensor:
        """Unit-norm embedding of one modality: [B, D]."""
        return F.normalize(self.heads[modality](self.features(modality, inputs)).float(), dim=-1)

    def forward(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        # `present` is accepted for objectives' sake; missing samples carry zero inputs and are masked there
        return {m: self.encode(m, x) for m, x in inputs.items() if m in self.encoders}

    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.exp())


def build_model(cfg: ModelConfig, modalities: tuple[str, ...] | None = None) -> MultiModalModel:
    """Build encoders by registry name; unknown encoder options fail naming the config key."""
    encoders, frozen = {}, []
    for m, enc_cfg in cfg.encoders.items():
        if modalities is not None and m not in modalities:
            continue
        encoders[m] = ENCODERS.build_from_config(enc_cfg.name, enc_cfg.options, f"model.encoders.{m}")
        if enc_cfg.freeze:
            frozen.append(m)
    return MultiModalModel(
        encoders,
        embed_dim=cfg.embed_dim,
        head=cfg.head,
        temperature_init=cfg.temperature_init,
        learnable_temperature=cfg.learnable_temperature,
        frozen=tuple(frozen),
    )
