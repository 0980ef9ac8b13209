"""Training: LightningModule, DataModule, callbacks, the `mmcl train` CLI and checkpoint loading."""
