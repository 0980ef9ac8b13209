"""Real Lightning training on the real Flickr8k triples (tiny configuration), and kill/resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from mmcl.config import load_config
from mmcl.train.checkpoint import load_model

TINY = "configs/tiny.yaml"


def _train_cmd(runs_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmcl", "train", "--config", TINY, "--set", f"runs_dir={runs_dir}", *extra]


def test_tiny_run_writes_everything(tmp_path):
    r = subprocess.run(_train_cmd(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = load_config(TINY, [f"runs_dir={tmp_path}"])
    run = cfg.run_dir()
    assert (run / "config_hash.txt").read_text().strip() == cfg.config_hash()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "logs" / "metrics.csv").is_file()
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 6  # 48 images / batch 8, one epoch
    assert metrics["splits"] == {"train": 48, "val": 16, "test": 16}
    for direction in ("text->image", "image->text", "text->audio", "audio->image"):
        assert 0.0 <= metrics["test_retrieval"][direction]["R@10"] <= 100.0
        # the untrained model's figures, measured before the first step, and chance: 5 positives of 80
        # captions for image->text, 1 of 16 images for text->image
        assert set(metrics["test_retrieval_before"][direction]) >= {"R@1", "R@5", "R@10"}
    chance = metrics["test_retrieval_chance_R@5"]
    assert abs(chance["text->image"] - 100 * 5 / 16) < 1e-6
    assert metrics["test_retrieval_before"] != metrics["test_retrieval"]
    model, config = load_model(run)
    assert config == cfg.to_dict()
    with torch.no_grad():
        z = model.encode("text", model.encoders["text"].tokenize(["a dog"]))
    assert torch.allclose(z.norm(), torch.tensor(1.0), atol=1e-5)
    # rerunning a finished config resumes at the end and trains nothing more
    r2 = subprocess.run(_train_cmd(tmp_path, "--no-eval"), capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    again = json.loads((run / "metrics.json").read_text())
    assert again["resumed_from_step"] == 6 and again["global_step"] == 6 and again["steps_this_process"] == 0


def _step_of(ckpt: Path) -> int | None:
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])
    except Exception:  # being written right now
        return None


def test_sigkill_then_same_command_resumes(tmp_path):
    """Kill -9 mid-epoch; the same command continues at the saved global step, not from scratch."""
    extra = ["--no-eval", "--set", "train.max_epochs=2", "--set", "train.checkpoint_every_n_steps=2"]
    cmd = _train_cmd(tmp_path, *extra)
    cfg = load_config(TINY, [f"runs_dir={tmp_path}", "train.max_epochs=2", "train.checkpoint_every_n_steps=2"])
    last = cfg.run_dir() / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    killed_after = None
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and (step := _step_of(last)) is not None and 4 <= step < 12:
            os.killpg(proc.pid, signal.SIGKILL)  # mid epoch 2 (6 steps per epoch)
            killed_after = step
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert killed_after is not None, "training finished or never checkpointed before the kill"
    assert not (cfg.run_dir() / "metrics.json").exists()

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((cfg.run_dir() / "metrics.json").read_text())
    resumed = metrics["resumed_from_step"]
    assert resumed is not None and resumed >= killed_after  # a later checkpoint may have landed before the kill
    assert metrics["global_step"] == 12  # same total: the resumed run did only the remaining steps
    assert f"global step {resumed}" in r.stdout
    # the second process ran only the remaining batches: the data position was restored too
    assert metrics["steps_this_process"] == 12 - resumed
