"""KDMCSE in real training: text-only and paired batches alternate, the teacher cache is written once."""

from __future__ import annotations

import csv
import math

from mmcl.config import load_config

STEPS = 6


def _cfg(tmp_path, seed: int):
    teacher_dir = tmp_path / "teacher"
    return load_config(
        "configs/sts_kdmcse.yaml",
        [
            f"runs_dir={tmp_path / 'runs'}",
            f"seed={seed}",
            "data.batch_size=4",
            "data.max_train_images=12",
            "data.max_eval_images=4",
            "data.image_size=64",
            "data.max_corpus_sentences=40",
            f"data.teacher.cache_dir={teacher_dir}",
            "model.embed_dim=32",
            "model.encoders.text.options.max_length=16",
            "model.encoders.image.options.image_size=64",
            f"train.max_steps={STEPS}",
            "train.log_every_n_steps=1",
            "train.checkpoint_every_n_steps=100",
            "train.progress_bar=false",
        ],
    )


def _column(run_dir, key: str) -> list[float]:
    with (run_dir / "logs" / "metrics.csv").open() as fh:
        return [float(row[key]) for row in csv.DictReader(fh) if row.get(key) not in (None, "")]


def test_kdmcse_alternates_batches_and_reuses_teacher_cache(tmp_path, monkeypatch):
    from mmcl.model import build_model
    from mmcl.train import teachers
    from mmcl.train.datamodule import TripleDataModule
    from mmcl.train.run import train

    monkeypatch.setenv("MMCL_CACHE_DIR", str(tmp_path / "cache"))  # frozen image features stay in the test
    cfg = _cfg(tmp_path, seed=0)
    metrics = train(cfg, evaluate_retrieval=False)
    assert metrics["global_step"] == STEPS
    assert metrics["splits"]["corpus"] == 40
    kinds = _column(cfg.run_dir(), "train/paired_batch")
    assert kinds == [0.0, 1.0] * (STEPS // 2)  # text, paired, text, paired, ...
    text_losses = _column(cfg.run_dir(), "train/kdmcse_text_loss")
    image_losses = _column(cfg.run_dir(), "train/kdmcse_image_nce")
    caption_losses = _column(cfg.run_dir(), "train/kdmcse_caption_nce")
    assert len(text_losses) == STEPS and all(math.isfinite(v) for v in text_losses)
    # the cross-modal terms exist from the first paired step on (Lightning's CSV rows repeat the last
    # value of a key on steps that do not log it, so rows are not counted here)
    assert image_losses and caption_losses and all(math.isfinite(v) for v in image_losses + caption_losses)
    cache = sorted((tmp_path / "teacher").glob("*.npy"))
    assert [p.name.split("-")[-2] for p in cache] == ["image", "text"]
    stamps = {p: p.stat().st_mtime_ns for p in cache}

    def no_teacher_model(*args, **kwargs):
        raise AssertionError("the teacher model was loaded although its embeddings are cached")

    monkeypatch.setattr(teachers, "teacher_encoders", no_teacher_model)
    again = _cfg(tmp_path, seed=1)  # another run (seed) on the same dataset version
    dm = TripleDataModule(again.data, build_model(again.model, tuple(again.data.modalities)), seed=1)
    dm.setup("fit")
    kinds = [b["kind"] for b, _ in zip(dm.train_dataloader(), range(4))]
    assert kinds == ["text", "paired", "text", "paired"]
    paired = next(b for b in dm.train_dataloader() if b["kind"] == "paired")
    assert paired["teacher"]["text"].shape == (4, 384) and paired["teacher"]["image"].shape == (4, 1280)
    assert sorted((tmp_path / "teacher").glob("*.npy")) == cache
    assert {p: p.stat().st_mtime_ns for p in cache} == stamps


def test_teacher_cache_misses_when_the_dataset_changes(tmp_path, flickr_records, monkeypatch):
    """A different dataset version (here: fewer records) gets its own cache file."""
    import numpy as np

    from mmcl.config import TeacherConfig
    from mmcl.train.teachers import build_teacher_tables

    calls = []

    def fake_encoders(cfg):
        def enc(items):
            calls.append(len(items))
            return np.random.default_rng(len(items)).normal(size=(len(items), 8))

        return enc, enc

    monkeypatch.setattr("mmcl.train.teachers.teacher_encoders", fake_encoders)
    cfg = TeacherConfig(kind="offline", cache_dir=str(tmp_path))
    first = build_teacher_tables(cfg, flickr_records[:3], progress=False)
    build_teacher_tables(cfg, flickr_records[:3], progress=False)
    assert len(calls) == 2  # text + image once; the second build read the cache
    build_teacher_tables(cfg, flickr_records[:2], progress=False)
    assert len(calls) == 4 and len(list(tmp_path.glob("*.npy"))) == 4
    row = first["text"]([f"{flickr_records[0].image_id}#1"])
    assert row.shape == (1, 8) and abs(float(row.norm()) - 1.0) < 1e-5


def test_sigkill_mid_alternation_resumes_at_the_same_step_and_batch_kind(tmp_path):
    """The alternating text-only/paired loader's position survives a SIGKILL: the same command continues
    at the checkpointed step with the batch kind that step would have had (text on even steps)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    steps = 10
    sets = ["runs_dir=" + str(tmp_path / "runs"), "seed=0", "data.batch_size=4", "data.max_train_images=12",
            "data.max_eval_images=4", "data.image_size=64", "data.max_corpus_sentences=40",
            f"data.teacher.cache_dir={tmp_path / 'teacher'}", "model.embed_dim=32",
            "model.encoders.text.options.max_length=16", "model.encoders.image.options.image_size=64",
            f"train.max_steps={steps}", "train.log_every_n_steps=1", "train.checkpoint_every_n_steps=2",
            "train.progress_bar=false"]
    cmd = [sys.executable, "-m", "mmcl", "train", "--config", "configs/sts_kdmcse.yaml", "--no-eval"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "MMCL_CACHE_DIR": str(tmp_path / "cache")}
    run_dir = load_config("configs/sts_kdmcse.yaml", sets).run_dir()
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    killed_at, deadline = None, time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                step = int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
            except Exception:  # being written right now
                step = None
            if step is not None and 3 <= step < steps:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.1)
    proc.wait(timeout=60)
    assert killed_at is not None, "training finished or never checkpointed before the kill"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == steps
    assert metrics["resumed_from_step"] >= killed_at
    assert metrics["steps_this_process"] == steps - metrics["resumed_from_step"]
    with (run_dir / "logs" / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train/paired_batch") not in (None, "")]
    resumed_rows = [r for r in rows if int(r["step"]) >= metrics["resumed_from_step"]]
    assert resumed_rows, "the resumed process logged no training step"
    for r in resumed_rows:  # step s trains on a text-only batch when s is even, a paired one when odd
        assert float(r["train/paired_batch"]) == int(r["step"]) % 2, r
