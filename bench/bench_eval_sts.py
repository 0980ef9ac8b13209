"""Evaluation speed and agreement: the full STS suite through mmcl vs sentence-transformers' own
EmbeddingSimilarityEvaluator (set by set), same model and same process; then the SentEval transfer suite.

    .venv/bin/python bench/bench_eval_sts.py --json /tmp/mmcl-bench-eval.json --markdown /tmp/mmcl-bench-eval.md

Model: all-minilm-l6-v2 (the packaged sentence-transformers folder). Data: the SentEval layout under the
data root, 7 STS sets (18,850 scored pairs). Both sides use the same pairs (read by mmcl.data.senteval)
and the same torch thread count; model loading is timed apart and excluded from both.

- mmcl: StsEvaluator (every distinct sentence of all 7 sets encoded once, token-length-sorted batches of
  64, inference mode).
- peer: for each set, EmbeddingSimilarityEvaluator(s1, s2, gold, main_similarity="cosine") with its
  defaults (batch 16; it encodes sentences1 and sentences2 of each set separately, length-sorted).
Order: mmcl, peer, mmcl again (the machine is shared; two mmcl runs bracket the peer so drifting load
shows). Wall and process CPU seconds are reported; the speed-up uses the mean of the two mmcl runs.
Agreement: the peer does not round cosines (see mmcl/eval/sts.py), so sets with identical-sentence
pairs may differ by ~0.1 from float noise; the per-set difference is printed.
Then TransferEvaluator on all seven tasks (no peer: SentEval itself is not a dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np


def _timed(fn, *args) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def peer_suite(model, evaluator) -> dict[str, float]:
    """sentence-transformers' evaluator, one per STS set, on the same pairs ("all" = concatenated subsets)."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    out = {}
    for name, subsets in evaluator.data.items():
        s1 = [s for sub in subsets for s in sub.sentences1]
        s2 = [s for sub in subsets for s in sub.sentences2]
        gold = np.concatenate([sub.scores for sub in subsets]).tolist()
        ev = EmbeddingSimilarityEvaluator(s1, s2, gold, main_similarity="cosine", name=name)
        out[name] = 100.0 * float(ev(model)[f"{name}_spearman_cosine"])
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from mmcl.eval.embedders import configure_threads, load_text_embedder
    from mmcl.eval.sts import StsEvaluator

    threads = configure_threads(args.threads)
    info: dict[str, Any] = {
        "threads": threads,
        "load_avg_start": os.getloadavg(),
        "cpu": platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
    }
    evaluator = StsEvaluator(data_dir=args.data_dir, max_pairs=args.max_pairs)
    embedder, info["mmcl_load_s"], _ = _timed(load_text_embedder, args.model, None)
    embedder.show_progress = False
    path = embedder.source
    peer_model, info["peer_load_s"], _ = _timed(lambda: SentenceTransformer(path, device="cpu"))

    runs = []
    first, wall, cpu = _timed(evaluator, embedder)
    runs.append({"side": "mmcl", "wall_s": wall, "cpu_s": cpu})
    peer, wall, cpu = _timed(peer_suite, peer_model, evaluator)
    runs.append({"side": "sentence-transformers", "wall_s": wall, "cpu_s": cpu})
    second, wall, cpu = _timed(evaluator, embedder)
    runs.append({"side": "mmcl (again)", "wall_s": wall, "cpu_s": cpu})
    mmcl_wall = (runs[0]["wall_s"] + runs[2]["wall_s"]) / 2
    mmcl_cpu = (runs[0]["cpu_s"] + runs[2]["cpu_s"]) / 2
    info.update(
        runs=runs,
        speedup_wall=runs[1]["wall_s"] / mmcl_wall,
        speedup_cpu=runs[1]["cpu_s"] / mmcl_cpu,
        mmcl=first,
        mmcl_again={k: v for k, v in second.items() if k != "details"},
        peer=peer,
        peer_avg=float(np.mean(list(peer.values()))),
        max_abs_diff=max(abs(first[k] - peer[k]) for k in peer),
        load_avg_after_sts=os.getloadavg(),
    )
    if not args.skip_transfer:
        from mmcl.eval.senteval import TransferEvaluator

        transfer_eval = TransferEvaluator(data_dir=args.data_dir, max_samples=args.transfer_max_samples)
        transfer, wall, cpu = _timed(transfer_eval, embedder)
        info["transfer"] = transfer
        info["transfer_wall_s"], info["transfer_cpu_s"] = wall, cpu
    info["load_avg_end"] = os.getloadavg()
    return info


def markdown(info: dict[str, Any], command: str) -> str:
    from mmcl.data.senteval import STS_SETS, TRANSFER_TASKS
    from mmcl.eval.report import PUBLISHED_STS

    sets = list(STS_SETS)
    head = "| | " + " | ".join(sets) + " | avg |\n|" + "---|" * (len(sets) + 2)
    rows = [
        "| mmcl StsEvaluator, all-minilm-l6-v2 (measured) | "
        + " | ".join(f"{info['mmcl'][s]:.2f}" for s in sets)
        + f" | {info['mmcl']['avg']:.2f} |",
        "| sentence-transformers EmbeddingSimilarityEvaluator, same model (measured) | "
        + " | ".join(f"{info['peer'][s]:.2f}" for s in sets)
        + f" | {info['peer_avg']:.2f} |",
    ]
    rows += [
        f"| {name} (published; BERT-base, Wiki1M/Flickr30k: different encoder and data) | "
        + " | ".join(f"{v:.2f}" for v in values)
        + " |"
        for name, values in PUBLISHED_STS.items()
    ]
    timing = info["mmcl"]["details"]["timing"]
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {info['cores']}-core CPU, no GPU, torch threads {info['threads']}; shared with other agents "
        f"(1-min load average {info['load_avg_start'][0]:.1f} at start, {info['load_avg_end'][0]:.1f} at end).",
        "",
        head,
        *rows,
        "",
        "| run (same process, in this order) | wall s | CPU s |",
        "|---|---|---|",
    ]
    lines += [f"| {r['side']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |" for r in info["runs"]]
    lines += [
        "",
        f"Speed-up (peer / mean of the two mmcl runs): **{info['speedup_wall']:.2f}x wall, "
        f"{info['speedup_cpu']:.2f}x CPU time**. mmcl encoded {timing['n_unique_sentences']} distinct sentences "
        f"for {timing['n_sentences']} sentence slots; max |mmcl - peer| over the 7 sets "
        f"{info['max_abs_diff']:.3f} (Spearman x100).",
    ]
    if "transfer" in info:
        tr = info["transfer"]
        tasks = [t for t in TRANSFER_TASKS if t in tr]
        lines += [
            "",
            "| SentEval transfer (accuracy x100) | " + " | ".join(tasks) + " | avg |",
            "|" + "---|" * (len(tasks) + 2),
            "| mmcl TransferEvaluator, all-minilm-l6-v2 | "
            + " | ".join(f"{tr[t]:.2f}" for t in tasks)
            + f" | {tr['avg']:.2f} |",
            "",
            f"Transfer suite: {info['transfer_wall_s']:.1f} s wall ({info['transfer_cpu_s']:.1f} s CPU), of which "
            f"encoding {tr['details']['timing']['encode_s']:.1f} s for {tr['details']['timing']['n_unique_sentences']} "
            "distinct sentences; per-task fit seconds: "
            + ", ".join(f"{t} {tr['details']['tasks'][t]['fit_s']:.1f}" for t in tasks)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="default: free cores (mmcl.eval.embedders)")
    parser.add_argument("--skip-transfer", action="store_true")
    parser.add_argument(
        "--max-pairs", type=int, default=None, help="smoke runs only: first N pairs per subset"
    )
    parser.add_argument("--transfer-max-samples", type=int, default=None, help="smoke runs only")
    parser.add_argument("--json", type=Path, default=Path("/tmp/mmcl-bench-eval.json"))
    parser.add_argument("--markdown", type=Path, default=Path("/tmp/mmcl-bench-eval.md"))
    args = parser.parse_args()
    info = run(args)
    args.json.write_text(json.dumps(info, indent=2, default=float) + "\n")
    md = markdown(info, "python " + " ".join(sys.argv))
    args.markdown.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
