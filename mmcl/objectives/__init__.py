"""Contrastive objectives, one file each, one interface (see base.py). Selected by name in the config."""

from mmcl.objectives.base import Objective, sum_losses
from mmcl.objectives import clip  # noqa: F401  (registers "clip")
from mmcl.registry import OBJECTIVES


def build_objective(name: str, **kwargs) -> Objective:
    return OBJECTIVES.build(name, **kwargs)


__all__ = ["Objective", "build_objective", "sum_losses", "OBJECTIVES"]
