"""Calibration of the paired promotion gate: how often it promotes a retrain, how often it rejects a worse model.

    .venv/bin/python bench/bench_gate.py --profile tiny --n 10 [--out bench/results/gate_tiny.json]

One champion (the profile's config, seed 0) and, on the same data, N retrains of the same config with seeds
1..N (the gate should promote them) and N degraded models: the same seeds with the text tower's learning
rate multiplied by --degrade (10x by default; the gate should reject them). Every model is evaluated with
the profile's STS and retrieval protocols (the same `mmcl eval` commands the pipeline runs, writing per-item
results) and compared with the champion by the registry's gate (mmcl.registry_models -> mmcl.promotion:
paired bootstrap, both metrics, Bonferroni at the profile's confidence). Training and evaluation are the
pipeline's own functions; only Dagster is left out (bench_orchestration.py measures that it adds nothing).
Reported: promotion rate of the retrains, rejection rate of the degraded models, each with a Wilson 95 %
interval, and every decision's delta and interval.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _key, _value in {"DAGSTER_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n (Wilson 1927)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", choices=("tiny", "demo"))
    parser.add_argument("--n", type=int, default=10, help="retrains and degraded models each")
    parser.add_argument("--degrade", type=float, default=10.0, help="text tower lr multiplier of a degraded model")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="further --set for every model")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from mmcl.config import load_config
    from mmcl.data.paths import data_dir
    from mmcl.model_card import model_lineage
    from mmcl.train.run import train
    from orchestration.defs.evaluation.protocols import evaluate
    from orchestration.defs.training.config import yaml_number
    from orchestration.model_records import registry, write_card
    from orchestration.resources import PROFILES, REPO_ROOT, MmclCli, MmclProfile, MmclWorkspace

    profile = MmclProfile(**PROFILES[args.profile])
    ws = MmclWorkspace(root=tempfile.mkdtemp(prefix="mmcl-gate-"))
    os.environ["MMCL_CACHE_DIR"] = str(ws.path("cache"))
    base = [*profile.train_overrides, f"data.data_dir={data_dir()}", f"runs_dir={ws.path('runs')}",
            "train.progress_bar=false", *args.extra]
    text_lr = load_config(REPO_ROOT / profile.train_config, base).model.encoders["text"].lr
    reg, cli = registry(ws), MmclCli(mode="inprocess")

    def build(seed: int, degraded: bool) -> str:
        sets = [*base, f"seed={seed}"] + ([f"model.encoders.text.lr={yaml_number(text_lr * args.degrade)}"] if degraded else [])
        cfg = load_config(REPO_ROOT / profile.train_config, sets)
        metrics = train(cfg)
        model_id = Path(metrics["run_dir"]).name
        reg.register(model_id, metrics["run_dir"])
        write_card(ws, model_lineage(model_id, metrics["run_dir"]))  # evaluations add to the lineage record
        for kind in ("sts", "retrieval"):
            evaluate(kind, model_id, ws, profile, cli, None)
        return model_id

    started = time.perf_counter()
    champion = build(0, False)
    reg.promote(champion, profile.tolerances(), confidence=profile.promotion_confidence)
    rows = []
    for kind in ("retrain", "degraded"):
        for seed in range(1, args.n + 1):
            model_id = build(seed, kind == "degraded")
            gate = reg.gate(model_id, profile.tolerances(), profile.promotion_confidence)
            rows.append({"kind": kind, "seed": seed, "model": model_id, "promoted": gate.passed,
                         "comparisons": [{"metric": c.metric, "challenger": c.challenger, "champion": c.champion,
                                          "passed": c.passed, **{k: (c.paired or {}).get(k)
                                                                for k in ("delta", "low", "high", "confidence")}}
                                         for c in gate.comparisons]})
            print(f"{kind} seed {seed}: {'promoted' if gate.passed else 'REJECTED'}: {gate.summary()}", flush=True)
    summary = {}
    for kind, want in (("retrain", True), ("degraded", False)):
        mine = [r for r in rows if r["kind"] == kind]
        k = sum(r["promoted"] == want for r in mine)
        summary[kind] = {"n": len(mine), "expected_outcome": "promoted" if want else "rejected", "rate": k / len(mine),
                         "wilson95": wilson(k, len(mine))}
    out = {"profile": args.profile, "n": args.n, "degrade": args.degrade, "confidence": profile.promotion_confidence,
           "margins": profile.tolerances(), "champion": champion, "summary": summary, "rows": rows,
           "seconds": round(time.perf_counter() - started, 1), "load_avg": os.getloadavg(), "cores": os.cpu_count()}
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
