"""Shared fixtures. Tests read the real data under $MMCL_DATA_DIR (default ../shared/data)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; the CPU path is tested separately")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def data_root():
    from mmcl.data.paths import data_dir

    return data_dir()


@pytest.fixture(scope="session")
def flickr_records(data_root):
    from mmcl.data.flickr import load_flickr_triples

    return load_flickr_triples(data_root)
