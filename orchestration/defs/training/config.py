"""Run configuration of the training step, editable in the Launchpad (retrain_job).

The Launchpad opens with every field filled in with the value the next run would use (the profile's mmcl
YAML plus the profile's overrides: `launchpad_defaults`), so a user sees what they change. Every field
becomes a `--set key=value` of `python -m mmcl train`, so the resolved config (and its hash, the run
directory name) records exactly what was trained.
"""

import enum
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

# The objectives registered in mmcl (mmcl.objectives.OBJECTIVES), listed here because importing them
# imports torch, and the code location must load in about a second; tests/orchestration/test_definitions.py
# asserts the two lists are the same. An Enum makes the Launchpad offer exactly these names.
OBJECTIVE_NAMES = ("centrobind", "clip", "fabind", "fullgraph", "kdmcse", "mcse", "multitask", "queue", "simcse",
                   "tilting")
Objective = enum.Enum("Objective", {name: name for name in OBJECTIVE_NAMES}, type=str)


def yaml_number(value: float | int) -> str:
    """A number spelt so that every YAML reader (1.1 and 1.2) reads it back as the same number.

    Python writes 1e-06 for 0.000001; YAML 1.1 (PyYAML) reads that as a *string*, because its float needs a
    dot and a signed exponent. 1.0e-06 is read as the float by both."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    text = repr(value)
    if isinstance(value, float) and "e" in text:
        mantissa, exponent = text.split("e")
        mantissa = mantissa if "." in mantissa else f"{mantissa}.0"
        exponent = exponent if exponent[0] in "+-" else f"+{exponent}"
        text = f"{mantissa}e{exponent}"
    return text


class TrainModelConfig(dg.Config):
    """What the next training run sets on top of the profile's mmcl YAML config. A field left null keeps the
    YAML's value."""

    config_path: str | None = Field(
        default=None, description="mmcl YAML config relative to the repository (null: the profile's, "
                                  "configs/demo.yaml for `demo`, configs/tiny.yaml for `tiny`). The fields below "
                                  "are pre-filled from the profile's config: set one to null to take this "
                                  "YAML's value instead.")
    objective: Objective | None = Field(
        default=None, description="objective.name, one of the objectives registered in mmcl (null: the YAML's)")
    epochs: int | None = Field(default=None, description="train.max_epochs (null: the YAML's). max_steps, when not "
                                                         "-1, stops training earlier")
    max_steps: int | None = Field(
        default=None, description="train.max_steps: training stops after this many optimizer steps even if epochs "
                                  "remain; -1: epochs decide (the tiny profile caps at 3 steps)")
    lr: float | None = Field(default=None, description="train.lr: heads and temperature (null: the YAML's)")
    text_lr: float | None = Field(default=None, description="model.encoders.text.lr: the text tower, e.g. 1.0e-6 .. "
                                                            "5.0e-5 for a pretrained tower (null: the YAML's)")
    batch_size: int | None = Field(default=None, description="data.batch_size (null: the YAML's)")
    seed: int | None = Field(default=None, description="seed: a retrain with another seed is another model")
    dataset_version: str | None = Field(
        default=None, description="DVC md5 (or a unique prefix) of the dataset version to train on; null: the "
                                  "latest version (the dataset_version asset)")
    overrides: list[str] = Field(default=[], description="further `--set KEY=VALUE` overrides of the mmcl config")
    fresh: bool = Field(default=False, description="discard an earlier run of the same resolved config and retrain")

    def sets(self) -> list[str]:
        """The --set overrides this config stands for (before `overrides`); numbers spelt exactly."""
        pairs: dict[str, Any] = {
            "objective.name": self.objective.value if isinstance(self.objective, enum.Enum) else self.objective,
            "train.max_epochs": self.epochs, "train.max_steps": self.max_steps, "train.lr": self.lr,
            "model.encoders.text.lr": self.text_lr, "data.batch_size": self.batch_size, "seed": self.seed}
        out = []
        for key, value in pairs.items():
            if value is not None:
                out.append(f"{key}={yaml_number(value) if isinstance(value, (int, float)) else value}")
        return out + list(self.overrides)


def launchpad_defaults(train_config: str, train_overrides: list[str], repo_root: Path) -> TrainModelConfig:
    """The config the Launchpad opens with: the values the next run takes from the profile (its YAML and
    overrides), read through mmcl.config so they are exactly what training would resolve."""
    from mmcl.config import load_config  # light: yaml + dataclasses

    cfg = load_config(repo_root / train_config, list(train_overrides))
    text = cfg.model.encoders.get("text")
    return TrainModelConfig(config_path=train_config, objective=Objective(cfg.objective.name),
                            epochs=cfg.train.max_epochs, max_steps=cfg.train.max_steps, lr=cfg.train.lr,
                            text_lr=text.lr if text is not None else None, batch_size=cfg.data.batch_size,
                            seed=cfg.seed)
