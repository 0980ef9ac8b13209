"""Experiment 2 of issue #3: sentence embeddings, SimCSE vs MCSE-style image grounding vs KDMCSE.

Two starting points for the text encoder: all-MiniLM-L6-v2 itself (sentence-tuned) and the same
architecture with every transformer layer re-initialised (not sentence-tuned; token embeddings kept,
mmcl.encoders.text `reinit_layers`). Every method trains on the same data stream (configs/sts_*.yaml:
unlabeled text-only batches from the Flickr8k caption corpus + SentEval transfer sentences, alternating
with paired Flickr8k text+image batches) for the same number of steps; the objectives differ only in
what they do with a batch. The untrained starting points are the baseline rows. Scores: STS avg of the
seven sets (mmcl.eval.sts.StsEvaluator, Spearman x100), read from the encoder's pooled output without the
training head (SimCSE/KDMCSE evaluate without their MLP).

    .venv/bin/python bench/bench_sentence.py --steps 40 --batch-size 32 --max-pairs 60

A CPU budget run: results are written after every row, so a stopped sweep keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

METHODS = ("simcse", "mcse", "kdmcse")
STARTS = {
    "all-MiniLM-L6-v2 (sentence-tuned)": [],
    "MiniLM-L6 re-initialised (not sentence-tuned)": ["model.encoders.text.options.reinit_layers=true"],
}
SETS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
# METHODS.md §3 (BERT-base, Wiki1M + Flickr30k, full budget): their numbers, not ours.
PUBLISHED = {
    "BERT-base first-last avg, untrained": [39.70, 59.38, 49.67, 66.03, 66.19, 53.87, 62.06, 56.70],
    "SimCSE-BERT-base unsup (Wiki1M)": [68.40, 82.41, 74.38, 80.91, 78.56, 76.85, 72.23, 76.25],
    "MCSE-BERT-base": [71.4, 81.8, 74.8, 83.6, 77.5, 79.5, 72.6, 77.3],
    "KDMCSE-BERT-base": [74.4, 83.1, 76.3, 83.7, 78.8, 81.3, 73.0, 78.6],
}


def overrides_for(args, start_overrides: list[str], seed: int) -> list[str]:
    return [
        f"runs_dir={args.runs_dir}",
        f"seed={seed}",
        f"train.max_steps={args.steps}",
        "train.max_epochs=-1",
        f"data.batch_size={args.batch_size}",
        "train.progress_bar=true",
        "train.log_every_n_steps=10",
        f"train.checkpoint_every_n_steps={args.steps}",
        *([f"model.encoders.text.lr={args.reinit_lr}"] if start_overrides else []),
        *start_overrides,
        *args.overrides,
    ]


def sts_of(model, evaluator) -> dict:
    from mmcl.eval.embedders import CheckpointEmbedder

    embedder = CheckpointEmbedder("in-memory", model=model, use_head=False, batch_size=64, show_progress=True)
    out = evaluator(embedder)
    return {k: out[k] for k in (*SETS, "avg")} | {"timing": out["details"]["timing"]}


def baseline_model(config_path: str, overrides: list[str]):
    """The starting point exactly as training builds it (same seed, so the same re-initialisation)."""
    import lightning as L

    from mmcl.config import load_config
    from mmcl.model import build_model

    cfg = load_config(config_path, overrides)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    return build_model(cfg.model, tuple(cfg.data.modalities))


def train_model(config_path: str, overrides: list[str]):
    from mmcl.config import load_config
    from mmcl.train.checkpoint import load_model
    from mmcl.train.run import train

    cfg = load_config(config_path, overrides)
    metrics = train(cfg, evaluate_retrieval=False)
    model, _ = load_model(metrics["run_dir"])
    return model, metrics


def markdown(results: dict, args) -> str:
    head = (
        "| starting point | objective | "
        + " | ".join(s.upper() if s != "sickr" else "SICK-R" for s in SETS)
        + " | avg |"
    )
    lines = [head.replace("STSB", "STS-B"), "|---" * (len(SETS) + 3) + "|"]
    for start, rows in results["rows"].items():
        for name, r in rows.items():
            lines.append(
                f"| {start} | {name} | "
                + " | ".join(f"{r['sts'][s]:.2f}" for s in SETS)
                + f" | **{r['sts']['avg']:.2f}** |"
            )
    for name, vals in PUBLISHED.items():
        lines.append(
            f"| published (theirs): {name} | — | "
            + " | ".join(f"{v:.2f}" for v in vals[:-1])
            + f" | {vals[-1]:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--reinit-lr", type=float, default=1e-4, help="encoder lr for the re-initialised start")
    ap.add_argument("--max-pairs", type=int, default=None, help="cap pairs per STS subset (None: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: free cores)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--starts", nargs="+", default=list(STARTS), choices=list(STARTS))
    ap.add_argument("--runs-dir", default="runs/bench-sentence")
    ap.add_argument("--output", default="bench/results/sentence.json")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override for every run"
    )
    args = ap.parse_args()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from mmcl.eval.embedders import configure_threads
    from mmcl.eval.sts import StsEvaluator

    # on a shared CPU, threads beyond the free cores spin-wait (see embedders.auto_threads)
    results_threads = configure_threads(args.threads)

    evaluator = StsEvaluator(SETS, max_pairs=args.max_pairs)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "args": vars(args),
        "rows": {},
        "load_avg_start": os.getloadavg()[0],
        "torch_threads": results_threads,
    }
    t0 = time.perf_counter()
    for start in args.starts:
        rows = results["rows"].setdefault(start, {})
        common = overrides_for(args, STARTS[start], args.seed)
        started = time.perf_counter()
        rows["untrained (baseline)"] = {
            "sts": sts_of(baseline_model("configs/sts_simcse.yaml", common), evaluator),
            "seconds": time.perf_counter() - started,
        }
        print(f"{start} untrained: STS avg {rows['untrained (baseline)']['sts']['avg']:.2f}", flush=True)
        for method in args.methods:
            started = time.perf_counter()
            model, metrics = train_model(f"configs/sts_{method}.yaml", common)
            train_s = time.perf_counter() - started
            rows[method] = {
                "sts": sts_of(model, evaluator),
                "train_seconds": train_s,
                "seconds": time.perf_counter() - started,
                "global_step": metrics["global_step"],
                "fit_seconds": metrics["fit_seconds"],
                "splits": metrics["splits"],
                "final": {k: v for k, v in metrics["final"].items() if k.startswith("train/")},
            }
            print(
                f"{start} {method}: STS avg {rows[method]['sts']['avg']:.2f} "
                f"(train {train_s:.0f} s, total {rows[method]['seconds']:.0f} s)",
                flush=True,
            )
            results["seconds"] = time.perf_counter() - t0
            results["load_avg_end"] = os.getloadavg()[0]
            out.write_text(json.dumps(results, indent=2, default=float))
    results["seconds"] = time.perf_counter() - t0
    out.write_text(json.dumps(results, indent=2, default=float))
    print(markdown(results, args))


if __name__ == "__main__":
    main()
