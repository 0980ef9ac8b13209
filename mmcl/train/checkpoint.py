"""Saving and loading trained models. Loading never unpickles code: torch.load(weights_only=True)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mmcl.errors import UserError

MODEL_FILE = "model.pt"  # weights + resolved config; no optimiser state (that lives in checkpoints/)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temp file in the same folder, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: torch.nn.Module, config: dict[str, Any], path: Path) -> None:
    atomic_torch_save({"config": config, "state_dict": model.state_dict(), "format": "mmcl-model-v1"}, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory -> its model.pt (or checkpoints/last.ckpt while training); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / MODEL_FILE, path / "checkpoints" / "last.ckpt"):
            if candidate.is_file():
                return candidate
        raise UserError(f"{path} holds no {MODEL_FILE} nor checkpoints/last.ckpt: not an mmcl run directory")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    return path


def load_model(path: str | Path, map_location: str = "cpu"):
    """(MultiModalModel in eval mode, resolved config dict) from a run dir, model.pt or Lightning .ckpt."""
    from mmcl.config import config_from_dict
    from mmcl.model import build_model

    file = resolve_checkpoint(path)
    try:
        blob = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot load checkpoint {file}: {exc}") from exc
    if "hyper_parameters" in blob:  # a Lightning checkpoint
        config = blob["hyper_parameters"]["config"]
        state = {k[len("model."):]: v for k, v in blob["state_dict"].items() if k.startswith("model.")}
    elif blob.get("format") == "mmcl-model-v1":
        config, state = blob["config"], blob["state_dict"]
    else:
        raise UserError(f"{file} is neither an mmcl model file nor a Lightning checkpoint")
    cfg = config_from_dict(config)
    model = build_model(cfg.model, tuple(cfg.data.modalities))
    model.load_state_dict(state)
    return model.eval(), config
