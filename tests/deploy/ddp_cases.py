"""Objective cases for the DDP gradient test, run by one process per rank or in one process.

    python tests/deploy/ddp_cases.py --rank R --world W --init file:///tmp/x --out DIR   (one gloo rank)

Each case is a small linear "model" (one Linear per modality, plus the objective's own parameters) on a
fixed global batch of GLOBAL_B rows with presence masks and teacher rows. A rank takes its contiguous
slice of the batch, runs the case through DistributedDataParallel (as Lightning does) and saves the
averaged gradients and the loss; `reference()` computes the same on the whole batch in one process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

GLOBAL_B, IN_DIM, EMBED_DIM, TEACHER_DIM = 8, 6, 5, 4
MODALITIES = ("audio", "image", "text")
CASES = {
    "clip": ("clip", {}),  # all pairs of 3 modalities, learnable logit scale
    "fabind": ("fabind", {"anchor": "image"}),
    "centrobind": ("centrobind", {}),  # keeps single-modality rows (they act as negatives only)
    "centrobind_min2": ("centrobind", {"min_present": 2, "weights": {"text": 2.0}}),
    "kdmcse": ("kdmcse", {"teacher_text_dim": TEACHER_DIM, "embed_dim": EMBED_DIM, "lambda_weight": 0.5,
                          "filter_text": True}),
    "simcse": ("simcse", {}),
    "tilting_mmd": ("tilting", {"loss": "mmd_joint", "temperature": 0.1}),
}


def global_batch_data() -> dict:
    """The fixed global batch: inputs per modality, presence masks, unit-norm teacher rows."""
    g = torch.Generator().manual_seed(7)
    x = {m: torch.randn(GLOBAL_B, IN_DIM, generator=g) for m in MODALITIES}
    x["text_view"] = x["text"] + 0.1 * torch.randn(GLOBAL_B, IN_DIM, generator=g)  # a fixed "second view"
    present = {
        "text": torch.tensor([1, 1, 1, 1, 1, 0, 1, 1], dtype=torch.bool),
        "image": torch.tensor([1, 0, 1, 1, 1, 1, 0, 1], dtype=torch.bool),
        "audio": torch.tensor([0, 1, 1, 0, 1, 0, 1, 1], dtype=torch.bool),  # row 5: image only
    }
    teacher = {m: F.normalize(torch.randn(GLOBAL_B, TEACHER_DIM, generator=g), dim=-1) for m in ("image", "text")}
    # near-duplicates across the two ranks' halves, so the teacher filter (α ≥ 0.8) removes cross-rank negatives
    teacher["text"][6] = F.normalize(teacher["text"][2] + 0.05, dim=-1)
    teacher["image"][7] = F.normalize(teacher["image"][0] + 0.05, dim=-1)
    return {"x": x, "present": present, "teacher": teacher}


class Case(nn.Module):
    """Linear encoders + the objective; forward returns the summed *_loss terms (the training step)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        from mmcl.objectives import build_objective

        torch.manual_seed(0)
        objective_name, options = CASES[name]
        self.name = name
        self.enc = nn.ModuleDict({m: nn.Linear(IN_DIM, EMBED_DIM) for m in MODALITIES})
        self.logit_scale = nn.Parameter(torch.tensor(2.0))  # log(1/τ), as MultiModalModel
        self.objective = build_objective(objective_name, **options)

    def embed(self, x: dict) -> dict:
        emb = {m: F.normalize(self.enc[m](x[m]), dim=-1) for m in MODALITIES}  # [B, D] each
        if self.name in ("kdmcse", "simcse"):
            return {"text": emb["text"], "text_view": F.normalize(self.enc["text"](x["text_view"]), dim=-1),
                    **({"image": emb["image"]} if self.name == "kdmcse" else {})}
        return emb

    def forward(self, x: dict, present: dict, teacher: dict) -> torch.Tensor:
        from mmcl.objectives import sum_losses

        terms = self.objective(self.embed(x), present=present, logit_scale=self.logit_scale.exp(),
                               batch={"teacher": teacher})
        return sum_losses(terms)

    def used_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters a case trains (DDP refuses unused ones unless told to look for them)."""
        used = {"kdmcse": ("text", "image"), "simcse": ("text",)}.get(self.name, MODALITIES)
        fixed_temperature = getattr(self.objective, "temperature", None) is not None
        return {n: p for n, p in self.named_parameters()
                if (n.startswith("enc.") and n.split(".")[1] in used)
                or (n == "logit_scale" and not fixed_temperature) or n.startswith("objective.")}


def rows(data: dict, lo: int, hi: int) -> dict:
    return {k: {m: t[lo:hi] for m, t in v.items()} for k, v in data.items()}


def grads_of(case: Case) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in case.used_parameters().items()}


def reference(name: str) -> tuple[float, dict[str, torch.Tensor]]:
    """(loss, gradients) of one process on the whole global batch."""
    case = Case(name)
    for n, p in case.named_parameters():
        p.requires_grad_(n in case.used_parameters())
    data = global_batch_data()
    loss = case(data["x"], data["present"], data["teacher"])
    loss.backward()
    return float(loss.detach()), grads_of(case)


def run_rank(rank: int, world: int, init: str, out: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        per = GLOBAL_B // world
        data = rows(global_batch_data(), rank * per, (rank + 1) * per)
        results = {}
        for name in CASES:
            case = Case(name)
            for n, p in case.named_parameters():
                p.requires_grad_(n in case.used_parameters())
            ddp = DistributedDataParallel(case)
            loss = ddp(data["x"], data["present"], data["teacher"])
            loss.backward()  # DDP all-reduces and averages the gradients over the ranks here
            results[name] = {"loss": float(loss.detach()), "grads": grads_of(case)}
        torch.save(results, out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--world", type=int, required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_rank(args.rank, args.world, args.init, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
