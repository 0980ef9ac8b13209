"""Real Lightning DDP on CPU: two gloo processes started by Lightning's own launcher train the tiny config.

Shows what the gradient test (test_ddp_gradients.py) cannot: that the trainer, the sharding sampler and
rank-0-only outputs work together in a real multi-process run.
"""

from __future__ import annotations

import json
import subprocess
import sys


def test_two_process_ddp_run_shards_the_data_and_writes_once(tmp_path):
    cmd = [sys.executable, "-m", "mmcl", "train", "--config", "configs/tiny.yaml", "--set", f"runs_dir={tmp_path}",
           "--set", "train.strategy=ddp", "--set", "train.devices=2", "--set", "train.accelerator=cpu",
           "--set", "train.progress_bar=false"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    metrics = json.loads((run / "metrics.json").read_text())
    # 48 train images, batch 8 per rank, 2 ranks on disjoint halves: 3 optimiser steps for the epoch
    # (6 would mean every rank saw every sample)
    assert metrics["global_step"] == 3 and metrics["splits"]["train"] == 48
    assert set(metrics["test_retrieval"]) >= {"text->image", "image->audio"}
    assert "test_retrieval_before" in metrics
    assert (run / "model.pt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    # both processes printed their summary line; only rank 0's carries the timing
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and sum(s["fit_seconds"] is not None for s in summaries) == 1
