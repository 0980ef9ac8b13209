"""Experiment 1 of issue #3: multi-view topologies on the Flickr8k triples, same budget, several seeds.

FABind (anchor image), FABind (anchor text), full graph and CentroBind train the same tri-modal model
(frozen pretrained text and image towers with trainable heads, speech encoder from scratch) and are
compared by held-out retrieval in all six directions, including each FABind's non-anchor pair.

    .venv/bin/python bench/bench_topologies.py --seeds 0 1 2 --epochs 15

`--set key=value` adds config overrides for every run (e.g. a smaller speech encoder to fit a CPU budget);
results are written after every run, so a long sweep that is stopped keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

METHODS = {
    "FABind (anchor image)": ("fabind", {"anchor": "image"}),
    "FABind (anchor text)": ("fabind", {"anchor": "text"}),
    "full graph": ("fullgraph", {}),
    "CentroBind": ("centrobind", {}),
    # the paper's open point: the anchor as a fixed target (no gradient through the centroid)
    "CentroBind (stop-gradient)": ("centrobind", {"stop_gradient": True}),
}
DIRECTIONS = ["text->image", "image->text", "text->audio", "audio->text", "image->audio", "audio->image"]


def run_one(method: str, seed: int, epochs: int, runs_dir: str, extra: list[str] | None = None) -> dict:
    from mmcl.config import load_config
    from mmcl.train.run import train

    name, options = METHODS[method]
    overrides = [
        f"name=topology-{name}-{options.get('anchor', 'all')}", f"seed={seed}", f"runs_dir={runs_dir}",
        f"objective.name={name}", f"objective.options={json.dumps(options)}",
        "model.encoders.text.freeze=true", f"train.max_epochs={epochs}", "train.progress_bar=false",
        "train.checkpoint_every_n_steps=1000", *(extra or []),
    ]
    cfg = load_config("configs/demo.yaml", overrides)
    return train(cfg)["test_retrieval"]


def summarise(results: dict[str, list[dict]]) -> str:
    lines = ["| method | " + " | ".join(f"{d} R@1/5/10" for d in DIRECTIONS) + " | RSUM |", "|---" * (len(DIRECTIONS) + 2) + "|"]
    for method, runs in results.items():
        cells, rsum = [], []
        for d in DIRECTIONS:
            vals = [[r[d][k] for r in runs] for k in ("R@1", "R@5", "R@10")]
            cells.append("/".join(f"{statistics.mean(v):.1f}" for v in vals) + f" (±{statistics.pstdev(vals[1]):.1f})")
        for r in runs:
            rsum.append(sum(r[d][k] for d in DIRECTIONS for k in ("R@1", "R@5", "R@10")))
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {statistics.mean(rsum):.1f} ± {statistics.pstdev(rsum):.1f} |")
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(results)
    for i, (method, runs) in enumerate(results.items()):
        means = [statistics.mean(r[d]["R@5"] for r in runs) for d in DIRECTIONS]
        errs = [statistics.pstdev([r[d]["R@5"] for r in runs]) for d in DIRECTIONS]
        ax.bar(np.arange(len(DIRECTIONS)) + i * width, means, width, yerr=errs, label=method, capsize=2)
    ax.set_xticks(np.arange(len(DIRECTIONS)) + 0.4 - width / 2, DIRECTIONS)
    ax.set_ylabel("held-out R@5 (%)")
    ax.set_title("Flickr8k triples, 125 held-out images: R@5 by topology (mean ± sd over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--runs-dir", default="runs/bench-topologies")
    ap.add_argument("--output", default="bench/results/topologies.json")
    ap.add_argument("--figure", default="bench/figures/topologies_r5.png")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every run")
    args = ap.parse_args()
    results: dict[str, list[dict]] = {m: [] for m in args.methods}
    t0 = time.perf_counter()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for method in args.methods:
            started = time.perf_counter()
            results[method].append(run_one(method, seed, args.epochs, args.runs_dir, args.overrides))
            print(f"{method} seed {seed} ({time.perf_counter() - started:.0f} s): "
                  + ", ".join(f"{d} R@5 {results[method][-1][d]['R@5']:.1f}" for d in DIRECTIONS), flush=True)
            out.write_text(json.dumps({"seeds": args.seeds, "epochs": args.epochs, "overrides": args.overrides,
                                       "results": results, "seconds": time.perf_counter() - t0}, indent=2))
    plot(results, Path(args.figure))
    print(summarise(results))


if __name__ == "__main__":
    main()
