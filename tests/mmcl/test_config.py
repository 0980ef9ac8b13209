import subprocess
import sys

import pytest

from mmcl.config import load_config
from mmcl.errors import ConfigError

DEMO = "configs/demo.yaml"


def test_demo_config_resolves_and_hashes_stably():
    a, b = load_config(DEMO), load_config(DEMO)
    assert a.config_hash() == b.config_hash()
    c = load_config(DEMO, ["train.max_epochs=3"])
    assert c.train.max_epochs == 3 and c.config_hash() != a.config_hash()
    assert c.model.encoders["image"].freeze is True


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.max_epocs=3", "train.*max_epocs"),
        ("train.max_epochs=three", "train.max_epochs: expected int"),
        ("data.batch_size=1", "data.batch_size"),
        ("data.modalities=[text, smell]", "smell"),
        ("model.encoders.text.options.poolin=mean", "model.encoders.text.options.*poolin"),
        ("typo_at_top=1", "typo_at_top"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        cfg = load_config(DEMO, [override])
        from mmcl.model import build_model  # encoder options are checked when the model is built

        build_model(cfg.model)


def _cli(*args, env_extra=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "mmcl", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_fails_before_training_on_bad_key_and_missing_data(tmp_path):
    r = _cli("train", "--config", DEMO, "--set", "train.lrr=0.1", "--set", f"runs_dir={tmp_path}")
    assert r.returncode == 2 and "unknown config key train.'lrr'" in r.stderr
    r = _cli("train", "--config", DEMO, "--set", f"runs_dir={tmp_path}", env_extra={"MMCL_DATA_DIR": str(tmp_path / "nodata")})
    assert r.returncode == 2 and str(tmp_path / "nodata") in r.stderr
    r = _cli("train", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "missing.yaml" in r.stderr
    assert not any(tmp_path.glob("*/checkpoints"))  # nothing started


def _numeric_keys(cls, prefix=""):
    """Dotted keys of every int/float field (optional ones too) of a config dataclass, recursively."""
    import dataclasses
    import typing

    from mmcl.config import EncoderConfig

    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        args = set(typing.get_args(tp)) or {tp}
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from _numeric_keys(tp, f"{key}.")
        elif typing.get_origin(tp) is dict and typing.get_args(tp)[1] is EncoderConfig:
            yield from _numeric_keys(EncoderConfig, f"{key}.*.")
        elif args & {int, float}:
            yield key


def test_every_numeric_field_has_a_range():
    from mmcl.config import RANGES, RunConfig

    keys = set(_numeric_keys(RunConfig))
    assert keys == set(RANGES), f"numeric fields without a range: {sorted(keys - set(RANGES))}"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=-1", "train.lr: -1.0 is out of range: must be > 0"),
        ("train.lr=0", "train.lr: 0.0 is out of range: must be > 0"),
        ("train.lr=.nan", "train.lr: nan is out of range: must be > 0"),
        ("train.checkpoint_every_n_steps=0", "train.checkpoint_every_n_steps: 0 is out of range: must be >= 1"),
        ("data.max_train_images=0", "data.max_train_images: 0 is out of range: must be >= 1 or null"),
        ("data.max_eval_images=-3", "data.max_eval_images: -3 is out of range: must be >= 1 or null"),
        ("data.batch_size=1", "data.batch_size: 1 is out of range: must be >= 2"),
        ("data.num_workers=-1", "data.num_workers: -1 is out of range: must be >= 0"),
        ("data.missing_modality_rate=1", "data.missing_modality_rate: 1.0 is out of range: must be in [0, 1)"),
        ("data.audio_seconds=0", "data.audio_seconds: 0.0 is out of range: must be in (0, 600]"),
        ("data.image_size=8", "data.image_size: 8 is out of range: must be in [16, 4096]"),
        ("model.embed_dim=0", "model.embed_dim: 0 is out of range: must be >= 1"),
        ("model.temperature_init=-0.07", "model.temperature_init: -0.07 is out of range: must be > 0"),
        ("model.encoders.text.lr=0", "model.encoders.text.lr: 0.0 is out of range: must be > 0 or null"),
        ("train.max_epochs=-5", "train.max_epochs: -5 is out of range: must be >= 1"),
        ("train.max_epochs=0", "train.max_epochs: 0 is out of range: must be >= 1"),
        ("train.max_steps=0", "train.max_steps: 0 is out of range: must be -1 or >= 1"),
        ("train.weight_decay=-0.1", "train.weight_decay: -0.1 is out of range: must be >= 0"),
        ("train.grad_clip=0", "train.grad_clip: 0.0 is out of range: must be > 0 or null"),
        ("train.devices=0", "train.devices: 0 is out of range: must be -1 or >= 1"),
        ("train.devices=x", 'train.devices: \'x\' is not a device count, -1, "auto" or indices like "0,1"'),
        ("seed=-1", "seed: -1 is out of range: must be in [0, 4294967295]"),
        ("objective.options.temperature=0", "objective.options.temperature: 0 is out of range: must be > 0 or null"),
        ("objective.options.temperature=hot", "objective.options.temperature: expected a number, got str 'hot'"),
        ("model.encoders.text.options.dropout=1",
         "model.encoders.text.options.dropout: 1 is out of range: must be in [0, 1) or null"),
        ("train.precision=bogus", "train.precision: 'bogus' is not one of auto, 32-true, 16-mixed, bf16-mixed, "
                                  "16-true, bf16-true, 64-true"),
        ("train.accelerator=quantum", "train.accelerator: 'quantum' is not one of auto, cpu, cuda, gpu, mps, tpu"),
    ],
)
def test_out_of_range_numbers_fail_naming_key_and_range(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("configs/tiny.yaml", [override])
    assert str(error.value) == message


@pytest.mark.parametrize(
    "spelling, value",
    [("1e-06", 1e-6), ("1.0e-6", 1e-6), ("1E-5", 1e-5), ("-3", -3), (".5", 0.5), ("5.", 5.0), ("+1e3", 1000.0),
     ("2", 2), ("1.5e+2", 150.0)],
)
def test_set_parses_numbers_in_every_spelling(spelling, value):
    """YAML 1.1 reads 1e-06 as a string; --set reads every YAML 1.2 / JSON number spelling as a number."""
    cfg = load_config("configs/tiny.yaml", [f"objective.options.margin={spelling}"])
    parsed = cfg.objective.options["margin"]
    assert parsed == value and type(parsed) is type(value)


def test_float_key_takes_an_exponent_learning_rate():
    cfg = load_config("configs/tiny.yaml", ["model.encoders.text.lr=1e-06", "train.lr=1E-3"])
    assert cfg.model.encoders["text"].lr == 1e-6 and cfg.train.lr == 1e-3
    with pytest.raises(ConfigError, match=r"--set train.lr=\[: the value is not valid YAML"):
        load_config("configs/tiny.yaml", ["train.lr=["])
