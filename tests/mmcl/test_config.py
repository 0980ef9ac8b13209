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
