"""STS suite speed and agreement: mmcl's StsEvaluator vs sentence-transformers, same model, same process.

    .venv/bin/python bench/bench_eval_sts.py --repeats 3 --json /tmp/sts.json --markdown /tmp/sts.md
    .venv/bin/python bench/bench_eval_sts.py --table after-job --repeats 3    # right after a CPU-heavy job
    .venv/bin/python bench/bench_eval_sts.py --transfer                       # + the SentEval suite, once

Model: all-minilm-l6-v2 (the packaged sentence-transformers folder). Data: the 7 STS sets read once by
mmcl.data.senteval (18,850 scored pairs; `--max-pairs N` keeps the first N of each subset). Model loading
is excluded from every side.

Table `equal` (one run; each round runs every side once, the order rotating between rounds so no side
always goes first after the previous one's heat):
- mmcl: StsEvaluator with its defaults (every distinct sentence of the 7 sets tokenised once and encoded
  once, token-length-sorted batches of 64, inference mode, torch threads = every core);
- peer@64: EmbeddingSimilarityEvaluator per set, batch 64 (equal batch size and threads to mmcl);
- loop@64: every distinct sentence of the 7 sets once through SentenceTransformer.encode(batch_size=64),
  then cosine + Spearman per set (the hand-written baseline of issue #13);
- peer default: EmbeddingSimilarityEvaluator with its defaults (batch 16; torch's default threads).
Table `after-job` (one run): before each measurement two processes spin on the CPU for `--burn-s` seconds
(a CPU-heavy job that just ended: the load average is high, the cores are free again); then mmcl with its
default threads, with 1 thread, and with every core set explicitly, rotating the order between rounds.
The "old default" row is what the previous rule (cores - 1-minute load average) would have chosen then.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _timed(fn, *args) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _pairs(evaluator) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
    """Per set: sentences1, sentences2, gold over the concatenated subsets (SentEval "all")."""
    return {
        name: (
            [s for sub in subsets for s in sub.sentences1],
            [s for sub in subsets for s in sub.sentences2],
            np.concatenate([sub.scores for sub in subsets]),
        )
        for name, subsets in evaluator.data.items()
    }


def peer_suite(model, evaluator, batch_size: int | None) -> dict[str, float]:
    """sentence-transformers' evaluator, one per STS set (batch_size None: its default)."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    out = {}
    for name, (s1, s2, gold) in _pairs(evaluator).items():
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        ev = EmbeddingSimilarityEvaluator(s1, s2, gold.tolist(), main_similarity="cosine", name=name, **kwargs)
        out[name] = 100.0 * float(ev(model)[f"{name}_spearman_cosine"])
    return out


def unique_loop(model, evaluator, batch_size: int) -> dict[str, float]:
    """Every distinct sentence once through SentenceTransformer.encode, then cosine + Spearman per set."""
    from scipy.stats import spearmanr

    pairs = _pairs(evaluator)
    unique = list(dict.fromkeys(s for s1, s2, _ in pairs.values() for s in s1 + s2))
    emb = model.encode(unique, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    row = {s: i for i, s in enumerate(unique)}
    out = {}
    for name, (s1, s2, gold) in pairs.items():
        cos = (emb[[row[s] for s in s1]] * emb[[row[s] for s in s2]]).sum(axis=1)
        out[name] = 100.0 * float(spearmanr(gold, cos)[0])
    return out


def _burn(seconds: float) -> None:
    """Two processes spinning for `seconds`: what a training step leaves behind in the load average."""
    code = f"import time\nt = time.time() + {seconds}\nwhile time.time() < t: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(len(os.sched_getaffinity(0)))]
    for p in procs:
        p.wait()


def _rotate(sides: list[str], round_index: int) -> list[str]:
    k = round_index % len(sides)
    return sides[k:] + sides[:k]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    from mmcl.eval.embedders import configure_threads, default_threads, load_text_embedder
    from mmcl.eval.sts import StsEvaluator

    cores = len(os.sched_getaffinity(0))
    torch_default_threads = torch.get_num_threads()  # what the peer gets when nobody sets threads
    info: dict[str, Any] = {"table": args.table, "cores": cores, "cpu": platform.processor() or platform.machine(),
                            "torch_default_threads": torch_default_threads, "max_pairs": args.max_pairs,
                            "uptime_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    evaluator = StsEvaluator(data_dir=args.data_dir, max_pairs=args.max_pairs)
    embedder = load_text_embedder(args.model, None, show_progress=False)
    info["mmcl_model"] = embedder.describe()
    peer = SentenceTransformer(embedder.source, device="cpu")
    info["n_pairs"] = sum(len(sub) for subs in evaluator.data.values() for sub in subs)
    info["n_unique_sentences"] = len(evaluator.sentences())

    if args.table == "equal":
        def mmcl_default():
            configure_threads()
            return {k: v for k, v in evaluator(embedder).items() if k in evaluator.data}

        def at_threads(fn, threads):
            def call():
                torch.set_num_threads(threads)
                return fn()
            return call

        all_cores = default_threads()
        sides = {
            "mmcl (defaults: batch 64, every core)": mmcl_default,
            "peer@64 (EmbeddingSimilarityEvaluator, batch 64)": at_threads(lambda: peer_suite(peer, evaluator, 64),
                                                                           all_cores),
            "loop@64 (unique sentences, SentenceTransformer.encode)": at_threads(
                lambda: unique_loop(peer, evaluator, 64), all_cores),
            "peer default (EmbeddingSimilarityEvaluator defaults: batch 16)": at_threads(
                lambda: peer_suite(peer, evaluator, None), torch_default_threads),
        }
    else:
        def mmcl_with(threads):
            def call():
                info.setdefault("threads_chosen", []).append(configure_threads(threads))
                return {k: v for k, v in evaluator(embedder).items() if k in evaluator.data}
            return call

        sides = {"mmcl default threads": mmcl_with(None), "mmcl --threads 1": mmcl_with(1),
                 f"mmcl --threads {cores}": mmcl_with(cores)}

    runs: list[dict[str, Any]] = []
    scores: dict[str, dict[str, float]] = {}
    for r in range(args.repeats):
        for name in _rotate(list(sides), r):
            entry: dict[str, Any] = {"side": name, "round": r + 1}
            if args.table == "after-job":
                _burn(args.burn_s)
                load = os.getloadavg()[0]
                entry["load_1m_before"] = round(load, 2)
                entry["old_default_threads"] = max(1, min(cores, int(cores - load + 0.5)))
            out, entry["wall_s"], entry["cpu_s"] = _timed(sides[name])
            entry["torch_threads"] = torch.get_num_threads()
            runs.append(entry)
            scores.setdefault(name, out)
            print(json.dumps(entry), flush=True)
    info["runs"], info["scores"] = runs, scores
    info["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if args.transfer:
        from mmcl.eval.senteval import TransferEvaluator

        configure_threads()
        transfer_eval = TransferEvaluator(data_dir=args.data_dir, max_samples=args.transfer_max_samples)
        info["transfer"], info["transfer_wall_s"], info["transfer_cpu_s"] = _timed(transfer_eval, embedder)
    return info


def markdown(info: dict[str, Any], command: str) -> str:
    from mmcl.data.senteval import STS_SETS

    sides = list(dict.fromkeys(r["side"] for r in info["runs"]))
    walls = {s: [r["wall_s"] for r in info["runs"] if r["side"] == s] for s in sides}
    cpus = {s: [r["cpu_s"] for r in info["runs"] if r["side"] == s] for s in sides}
    ref = sides[0]
    lines = [f"Command: `{command}`", "",
             f"Machine: {info['cores']}-core {info['cpu']} VM, no GPU, shared with other engineers' jobs. "
             f"`uptime` at start: {info['uptime_start']}; at end: {info['uptime_end']}. "
             f"{info['n_pairs']} scored pairs ({info['n_unique_sentences']} distinct sentences)"
             + (f", first {info['max_pairs']} pairs of each subset" if info["max_pairs"] else ", all pairs") + ".",
             "", "| side | wall s per round | median wall s | median CPU s | "
             + ("speed-up of mmcl (median wall) | " if info["table"] == "equal" else "vs best median | ")
             + "max abs(score - mmcl) |", "|---|---|---|---|---|---|"]
    best = min(np.median(v) for v in walls.values())
    for s in sides:
        med = float(np.median(walls[s]))
        ratio = med / float(np.median(walls[ref])) if info["table"] == "equal" else med / best
        diff = max(abs(info["scores"][s][k] - info["scores"][ref][k]) for k in info["scores"][ref])
        threads = sorted({r["torch_threads"] for r in info["runs"] if r["side"] == s})
        lines.append(f"| {s} (torch threads {','.join(map(str, threads))}) | "
                     + " / ".join(f"{w:.1f}" for w in walls[s])
                     + f" | {med:.1f} | {float(np.median(cpus[s])):.1f} | {ratio:.2f}x | {diff:.3f} |")
    if info["table"] == "after-job":
        lines += ["", "1-minute load average just before each mmcl run, and the threads the old rule would have "
                  "chosen then: " + ", ".join(f"{r['load_1m_before']:.1f} -> {r['old_default_threads']}"
                                              for r in info["runs"]) + "."]
    lines += ["", "| scores (Spearman x100) | " + " | ".join(STS_SETS) + " |", "|---" * (len(STS_SETS) + 1) + "|"]
    lines += [f"| {s} | " + " | ".join(f"{info['scores'][s][k]:.3f}" for k in STS_SETS) + " |" for s in sides]
    if "transfer" in info:
        tr = info["transfer"]
        lines += ["", f"SentEval transfer suite (mmcl defaults): {info['transfer_wall_s']:.1f} s wall, avg "
                  f"{tr['avg']:.2f}, encoding {tr['details']['timing']['encode_s']:.1f} s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--table", choices=("equal", "after-job"), default="equal")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burn-s", type=float, default=30.0, help="after-job: seconds of the CPU-heavy job")
    parser.add_argument("--max-pairs", type=int, default=None, help="first N pairs per subset (default: all)")
    parser.add_argument("--transfer", action="store_true", help="then the SentEval transfer suite once")
    parser.add_argument("--transfer-max-samples", type=int, default=None)
    parser.add_argument("--json", type=Path, default=Path("/tmp/mmcl-bench-sts.json"))
    parser.add_argument("--markdown", type=Path, default=Path("/tmp/mmcl-bench-sts.md"))
    args = parser.parse_args()
    info = run(args)
    args.json.write_text(json.dumps(info, indent=2, default=float) + "\n")
    md = markdown(info, "python " + " ".join(sys.argv))
    args.markdown.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
