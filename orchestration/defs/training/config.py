"""Run configuration of the training step, editable in the Launchpad (retrain_job)."""


import dagster as dg
from pydantic import Field


class TrainModelConfig(dg.Config):
    """What the next training run changes relative to the profile's mmcl YAML config. Empty fields keep the
    YAML's value; every field becomes a `--set key=value` of `python -m mmcl train`, so the resolved config
    (and its hash, the run directory name) records exactly what was trained."""

    config_path: str | None = Field(
        default=None, description="mmcl YAML config relative to the repository (None: the profile's, "
                                  "configs/demo.yaml for `demo`, configs/tiny.yaml for `tiny`)")
    objective: str | None = Field(
        default=None, description="objective.name: clip, simcse, kdmcse, centrobind, fabind, fullgraph, tilting, "
                                  "multitask, ... (None: the YAML's)")
    epochs: int | None = Field(default=None, description="train.max_epochs (None: the YAML's)")
    lr: float | None = Field(default=None, description="train.lr, heads and temperature (None: the YAML's)")
    text_lr: float | None = Field(default=None, description="model.encoders.text.lr, the text tower (None: the YAML's)")
    batch_size: int | None = Field(default=None, description="data.batch_size (None: the YAML's)")
    dataset_version: str | None = Field(
        default=None, description="DVC md5 (or a unique prefix) of the dataset version to train on; None: the "
                                  "latest version (the dataset_version asset)")
    overrides: list[str] = Field(default=[], description="further `--set KEY=VALUE` overrides, e.g. seed=1")
    fresh: bool = Field(default=False, description="discard an earlier run of the same resolved config and retrain")

    def sets(self) -> list[str]:
        """The --set overrides this config stands for (before `overrides`)."""
        pairs = {"objective.name": self.objective, "train.max_epochs": self.epochs, "train.lr": self.lr,
                 "model.encoders.text.lr": self.text_lr, "data.batch_size": self.batch_size}
        return [f"{key}={value}" for key, value in pairs.items() if value is not None] + list(self.overrides)
