"""Contrastive objectives, one file each, one interface (see base.py). Selected by name in the config."""

# imported for their @OBJECTIVES.register side effect
from mmcl.objectives import (  # noqa: F401
    centrobind,
    clip,
    fabind,
    fullgraph,
    kdmcse,
    multitask,
    queue,
    simcse,
    tilting,
)
from mmcl.objectives.base import Objective, sum_losses
from mmcl.registry import OBJECTIVES


def build_objective(name: str, **kwargs) -> Objective:
    return OBJECTIVES.build(name, **kwargs)


__all__ = ["Objective", "build_objective", "sum_losses", "OBJECTIVES"]
