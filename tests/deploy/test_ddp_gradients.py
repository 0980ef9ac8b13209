"""Two gloo ranks under DistributedDataParallel give the single-process full-batch gradients.

The objectives gather embeddings, presence masks and teacher rows from every rank (gather.global_batch)
and compute the loss on the global batch; DDP averages the ranks' gradients. The test runs two real
processes (tests/deploy/ddp_cases.py) on the two halves of a fixed batch and compares their gradients
with one process on the concatenated batch, to 1e-5, for CLIP (3 modalities, learnable scale), FABind,
CentroBind (with single-modality rows, and min_present=2 with weights), KDMCSE (margins, teacher filter
across ranks, caption projection), SimCSE and the tilting MMD loss.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CASES_FILE = Path(__file__).with_name("ddp_cases.py")
WORLD = 2


def _load_cases():
    spec = importlib.util.spec_from_file_location("mmcl_ddp_cases", CASES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Results of the two gloo ranks (one process each, rendezvous through a file store)."""
    out = tmp_path_factory.mktemp("ddp")
    init = f"file://{out / 'store'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(CASES_FILE), "--rank", str(r), "--world", str(WORLD),
                               "--init", init, "--out", str(out)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=120)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(_load_cases().CASES))
def test_gathered_loss_gradients_equal_full_batch(ranks, name):
    cases = _load_cases()
    torch.set_num_threads(1)
    ref_loss, ref_grads = cases.reference(name)
    assert ref_grads, "the case trains no parameter"
    for rank, result in enumerate(ranks):
        got = result[name]
        # every rank computes the loss of the global batch, not of its half
        assert got["loss"] == pytest.approx(ref_loss, abs=1e-5), f"rank {rank}"
        assert set(got["grads"]) == set(ref_grads)
        for param, ref in ref_grads.items():
            assert ref.abs().max() > 0, f"{param}: zero reference gradient tests nothing"
            torch.testing.assert_close(got["grads"][param], ref, atol=1e-5, rtol=1e-5,
                                       msg=lambda m, p=param, r=rank: f"{name} rank {r} {p}: {m}")

