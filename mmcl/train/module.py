"""LightningModule: one `_common_step` for train/val; the objective decides the loss terms.

    python -m mmcl train --config configs/demo.yaml
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from typing_extensions import override

from mmcl.config import RunConfig, config_from_dict
from mmcl.model import build_model
from mmcl.objectives import OBJECTIVES, sum_losses


class ContrastiveModule(L.LightningModule):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: RunConfig = config_from_dict(config)
        self.model = build_model(self.cfg.model, tuple(self.cfg.data.modalities))
        self.objective = OBJECTIVES.build_from_config(self.cfg.objective.name, self.cfg.objective.options, "objective")
        self.objective.attach(self.model)

    def _common_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        emb = self.objective.embed(self.model, batch)
        scale = self.model.logit_scale.exp().clamp(max=100.0)  # CLIP caps 1/τ at 100 for stability
        terms = self.objective(emb, present=batch["present"], logit_scale=scale, batch=batch)
        loss = sum_losses(terms)
        bs = len(batch["ids"])
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=bs, sync_dist=stage != "train")
        for name, value in terms.items():
            self.log(f"{stage}/{name}", value, batch_size=bs, sync_dist=stage != "train")
        if stage == "train":
            self.log("train/temperature", 1.0 / scale, batch_size=bs)
            if "kind" in batch:  # text-only and paired batches alternate (MCSE / KDMCSE)
                self.log("train/paired_batch", float(batch["kind"] == "paired"), batch_size=bs)
        return loss

    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    @override
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "val")

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.objective.after_step(self.model)  # momentum encoders / queues move after the optimiser step

    @override
    def configure_optimizers(self):
        tc = self.cfg.train
        groups: list[dict[str, Any]] = []
        for m, enc_cfg in self.cfg.model.encoders.items():
            if m not in self.model.encoders or enc_cfg.freeze:
                continue
            params = [p for p in self.model.encoders[m].parameters() if p.requires_grad]
            if params:
                groups.append({"params": params, "lr": enc_cfg.lr or tc.lr, "name": f"encoder.{m}"})
        rest = [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("model.encoders.")]
        groups.append({"params": rest, "lr": tc.lr, "name": "heads"})
        # no weight decay on the temperature: decaying log(1/τ) pulls τ towards 1
        for g in groups:
            g["weight_decay"] = tc.weight_decay
        scale_param = self.model.logit_scale
        if scale_param.requires_grad:
            groups[-1]["params"] = [p for p in groups[-1]["params"] if p is not scale_param]
            groups.append({"params": [scale_param], "lr": tc.lr, "weight_decay": 0.0, "name": "logit_scale"})
        optimizer = torch.optim.AdamW(groups)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(tc.warmup_steps, total // 2)

        def lr_lambda(step: int) -> float:  # linear warm-up, then cosine decay to 0
            if step < warmup:
                return (step + 1) / max(1, warmup)
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
