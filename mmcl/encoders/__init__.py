"""Encoders per modality, one file each, built by registry name from the config."""

from mmcl.encoders import audio, efficientnet, open_clip_towers, text  # noqa: F401  (register)
from mmcl.encoders.heads import build_head
from mmcl.encoders.hub import resolve_text_model
from mmcl.registry import ENCODERS

__all__ = ["ENCODERS", "build_head", "resolve_text_model"]
