"""Training throughput: `mmcl train`'s Lightning loop vs a plain PyTorch loop with open_clip's ClipLoss,
same encoders (all-MiniLM-L6-v2 text, frozen EfficientNet-Lite0 image with cached features), same
batch size, same data loader (the DataModule's), same optimiser, same torch threads (--threads, default
every core), both warmed (--warmup steps untimed). Each variant runs in its own subprocess (so peak RSS
is its own), the variants rotating in every repeat to share the machine's noise.

    .venv/bin/python bench/bench_train_throughput.py --steps 30 --batch-size 64 --repeats 3
    .venv/bin/python bench/bench_train_throughput.py --steps 14 --warmup 4 --repeats 3 --profile
    .venv/bin/python bench/bench_train_throughput.py --dropout-cost --steps 4 --repeats 3   # the cause alone
    .venv/bin/python bench/bench_train_throughput.py --device cuda --steps 200 --warmup 20 --batch-size 256

Train mode: Lightning 2.x does not call `.train()` at the start of fit (it warns "Found N module(s) in
eval mode"), and transformers' from_pretrained returns the text backbone in eval mode, so `mmcl train`
steps with dropout off. The plain loop is measured both ways: "plain" calls model.train() as a hand-written
loop does (dropout on), "plain-as-built" keeps the modules' modes as built, like mmcl. `--profile` adds
the top operators by self CPU time over the timed steps (torch.profiler), per variant.

On CUDA both variants train in bf16 autocast (mmcl: precision "auto" -> bf16-mixed; plain: torch.autocast).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

CONFIG = "configs/demo.yaml"


def _setup(batch_size: int, device: str = "cpu", extra: tuple[str, ...] = ()):
    import torch

    from mmcl.config import load_config
    from mmcl.train.datamodule import TripleDataModule
    from mmcl.train.module import ContrastiveModule

    torch.manual_seed(0)
    accelerator = "gpu" if device == "cuda" else "cpu"
    cfg = load_config(CONFIG, ["data.modalities=[text, image]", f"data.batch_size={batch_size}", "train.progress_bar=false",
                               "runs_dir=/tmp/mmcl-bench-runs", f"train.accelerator={accelerator}", "train.devices=1", *extra])
    module = ContrastiveModule(cfg.to_dict())
    dm = TripleDataModule(cfg.data, module.model, seed=0)
    dm.setup()
    return cfg, module, dm


def _profiler(enabled: bool):
    import contextlib

    import torch

    if not enabled:
        return contextlib.nullcontext(None)
    return torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])


def _top_ops(prof, n: int = 12) -> list[dict]:
    if prof is None:
        return []
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:n]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return [{"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / total,
             "calls": e.count} for e in rows]


def run_plain(steps: int, warmup: int, batch_size: int, device: str = "cpu", train_mode: bool = True,
              profile: bool = False) -> dict:
    import torch
    from lightning.pytorch.utilities import move_data_to_device
    from open_clip.loss import ClipLoss

    cfg, module, dm = _setup(batch_size, device)
    model = module.model.to(device)
    if train_mode:  # a hand-written loop's model.train(): dropout on in the text backbone
        model.train()
    groups = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    loss_fn = ClipLoss()
    done, t0, prof = 0, None, None
    while done < steps:
        for batch in dm.train_dataloader():
            if done == warmup:
                prof = _profiler(profile).__enter__()
                t0 = time.perf_counter()
            batch = move_data_to_device(batch, device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                emb = model(batch["inputs"])
                loss = loss_fn(emb["image"], emb["text"], model.logit_scale.exp().clamp(max=100))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(groups, cfg.train.grad_clip)
            optimizer.step()
            done += 1
            if done >= steps:
                break
    if device == "cuda":
        torch.cuda.synchronize()  # kernels are asynchronous: time what ran, not what was queued
    seconds = time.perf_counter() - t0
    if prof is not None:
        prof.__exit__(None, None, None)
    return {"samples_per_s": (steps - warmup) * batch_size / seconds, "seconds": seconds,
            "text_backbone_training": model.encoders["text"].backbone.training, "top_ops": _top_ops(prof)}


def run_mmcl(steps: int, warmup: int, batch_size: int, device: str = "cpu", profile: bool = False) -> dict:
    import lightning as L

    from mmcl.train.run import build_trainer

    class Clock(L.Callback):
        t0 = t1 = prof = None
        training = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == warmup and self.t0 is None:
                self.prof = _profiler(profile).__enter__()
                self.training = pl_module.model.encoders["text"].backbone.training
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if device == "cuda":
                import torch

                torch.cuda.synchronize()
            self.t1 = time.perf_counter()

    # max_steps through the config (Lightning 2.6's fit loop has no setter for it); no validation epochs
    cfg, module, dm = _setup(batch_size, device, (f"train.max_steps={steps}", "train.max_epochs=1000",
                                                  "train.val_every_n_epochs=1000"))
    clock = Clock()
    trainer = build_trainer(cfg, cfg.run_dir(), [clock], enable_checkpointing=False)
    trainer.limit_val_batches = 0
    trainer.fit(module, datamodule=dm)
    seconds = clock.t1 - clock.t0
    if clock.prof is not None:
        clock.prof.__exit__(None, None, None)
    return {"samples_per_s": (steps - warmup) * batch_size / seconds, "seconds": seconds,
            "text_backbone_training": clock.training, "top_ops": _top_ops(clock.prof)}


KINDS = ("plain", "plain-as-built", "mmcl")


def dropout_cost(steps: int, repeats: int, batch_size: int, threads: int | None) -> dict:
    """The cause of the plain/mmcl ratio in isolation: the demo's text tower (all-MiniLM-L6-v2, max_length
    32, mean pooling) + its linear head, one optimiser step on a fixed batch of Flickr8k captions, with the
    backbone in train mode (dropout on, a hand-written loop) vs eval mode (as mmcl train runs it), in one
    process, alternating per repeat; then the profiler's share of the dropout operators in train mode."""
    import torch

    from mmcl.data.flickr import load_flickr_triples
    from mmcl.encoders.text import TextEncoder

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    captions = [c for r in load_flickr_triples() for c in r.captions][:batch_size]
    encoder = TextEncoder("all-minilm-l6-v2", pooling="mean", max_length=32)
    head = torch.nn.Linear(encoder.output_dim, 256)
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-5)
    tokens = encoder.tokenize(captions)

    def step() -> None:
        z = torch.nn.functional.normalize(head(encoder(tokens)), dim=-1)  # [B, 256]
        loss = torch.nn.functional.cross_entropy(z @ z.T * 14.3, torch.arange(len(z)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds: dict[str, list[float]] = {"train (dropout on)": [], "eval (dropout off)": []}
    for r in range(repeats):
        for mode in list(seconds)[r % 2:] + list(seconds)[: r % 2]:
            encoder.backbone.train(mode.startswith("train"))
            step()  # warm
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            seconds[mode].append((time.perf_counter() - t0) / steps)
    encoder.backbone.train(True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    dropout = sum(e.self_cpu_time_total for e in events if "dropout" in e.key or "bernoulli" in e.key)
    return {"threads": torch.get_num_threads(), "batch_size": batch_size, "steps_per_repeat": steps,
            "seconds_per_step": seconds,
            "median_s": {k: statistics.median(v) for k, v in seconds.items()},
            "dropout_share_of_self_cpu_in_train_mode": dropout / total, "top_ops": _top_ops(prof, 8)}


def child(kind: str, steps: int, warmup: int, batch_size: int, device: str = "cpu", threads: int | None = None,
          profile: bool = False) -> None:
    import os

    import torch

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    if kind == "mmcl":
        result = run_mmcl(steps, warmup, batch_size, device, profile)
    else:
        result = run_plain(steps, warmup, batch_size, device, train_mode=kind == "plain", profile=profile)
    result["torch_threads"] = torch.get_num_threads()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of every variant (default: every core)")
    ap.add_argument("--profile", action="store_true", help="top operators by self CPU time (torch.profiler)")
    ap.add_argument("--dropout-cost", action="store_true",
                    help="only the text tower in train vs eval mode, one process (the cause of the ratio)")
    ap.add_argument("--child", choices=KINDS)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    if args.dropout_cost:
        print(json.dumps(dropout_cost(args.steps, args.repeats, args.batch_size, args.threads), indent=2))
        return
    if args.child:
        child(args.child, args.steps, args.warmup, args.batch_size, args.device, args.threads, args.profile)
        return
    results: dict[str, list[dict]] = {k: [] for k in KINDS}
    for r in range(args.repeats):
        for kind in KINDS[r % len(KINDS):] + KINDS[: r % len(KINDS)]:
            cmd = [sys.executable, __file__, "--child", kind, "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--batch-size", str(args.batch_size), "--device", args.device]
            cmd += (["--threads", str(args.threads)] if args.threads else []) + (["--profile"] if args.profile else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
            results[kind].append(json.loads(line[7:]))
            print(kind, results[kind][-1], flush=True)
    best = {k: max(r["samples_per_s"] for r in v) for k, v in results.items()}
    peak = {k: max(r["peak_rss_mb"] for r in v) for k, v in results.items()}
    if args.device == "cuda":
        import torch

        machine = f"{torch.cuda.get_device_name(0)}, bf16 autocast"
    else:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only"
    median = {k: statistics.median(r["samples_per_s"] for r in v) for k, v in results.items()}
    print(json.dumps({"machine": machine, "device": args.device, "uptime": os.popen("uptime").read().strip(),
                      "batch_size": args.batch_size, "timed_steps": args.steps - args.warmup,
                      "samples_per_s": best, "median_samples_per_s": median,
                      "ratio_mmcl_over_plain": median["mmcl"] / median["plain"],
                      "ratio_mmcl_over_plain_as_built": median["mmcl"] / median["plain-as-built"],
                      "peak_rss_mb": peak, "all": results}, indent=2))


if __name__ == "__main__":
    main()
