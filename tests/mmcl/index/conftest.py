"""Fixtures for the index tests: a small real Flickr-layout dataset (copied from the shared data) and real,
seeded mmcl model files (configs/tiny.yaml towers, untrained heads) registered in a real ModelRegistry."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from mmcl.data.flickr import FLICKR_DIR

MD5_1 = "0123456789abcdef0123456789abcdef.dir"  # a dataset version's DVC md5, as dataset_version names it

N_IMAGES = 12


def write_subset(records, out: Path) -> Path:
    """A Flickr8k-layout data root with `records` (images, captions, speech clips, splits) under `out`."""
    root = out / FLICKR_DIR
    (root / "images").mkdir(parents=True)
    (root / "audio_tts").mkdir()
    with open(root / "captions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "caption"])
        for r in records:
            shutil.copyfile(r.image_path, root / "images" / f"{r.image_id}.jpg")
            writer.writerows([f"{r.image_id}.jpg", c] for c in r.captions)
    with open(root / "split_membership.tsv", "w", encoding="utf-8") as fh:
        fh.write("image_id\tflickr8k_split\n" + "".join(f"{r.image_id}.jpg\t{r.split}\n" for r in records))
    with open(root / "audio_transcripts.tsv", "w", encoding="utf-8") as fh:
        fh.write("image_id\taudio_file\ttranscript\n")
        for r in records:
            shutil.copyfile(r.audio_path, root / "audio_tts" / r.audio_path.name)
            fh.write(f"{r.image_id}.jpg\taudio_tts/{r.audio_path.name}\t{r.transcript}\n")
    return out


def tiny_model_file(path: Path, seed: int) -> Path:
    """A real tri-modal mmcl model file from configs/tiny.yaml, its heads seeded with `seed`."""
    import torch

    from mmcl.config import load_config
    from mmcl.model import build_model
    from mmcl.train.checkpoint import save_model

    cfg = load_config("configs/tiny.yaml", [f"seed={seed}"])
    torch.manual_seed(seed)
    model = build_model(cfg.model, tuple(cfg.data.modalities))
    save_model(model, cfg.to_dict(), path / "model.pt")
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, flickr_records) -> Path:
    with_audio = [r for r in flickr_records if r.audio_path is not None]
    return write_subset(with_audio[:N_IMAGES], tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory) -> dict[str, Path]:
    """Two trained-run-like folders (model.pt) with different weights: model ids tiny-a, tiny-b."""
    return {name: tiny_model_file(tmp_path_factory.mktemp(name), seed) for name, seed in (("tiny-a", 0), ("tiny-b", 1))}


@pytest.fixture(scope="session")
def built(tmp_path_factory, run_dirs, small_data):
    """Each model's index over small_data as MD5_1, built once: tests copy the folders (building is slow)."""
    from mmcl.index.store import build_index

    root = tmp_path_factory.mktemp("built")
    return {m: build_index(m, run / "model.pt", small_data, MD5_1, root)["folder"] for m, run in run_dirs.items()}
