"""`mmcl demo`: train the tri-modal demo configuration on the Flickr8k triples and print held-out
retrieval (R@1/5/10, every direction) before and after training, beside the chance level.

    make demo      # = .venv/bin/python -m mmcl demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train the demo configuration and print held-out retrieval before/after")
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--fresh", action="store_true", help="retrain even if this config already finished")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmcl.config import load_config
    from mmcl.data.paths import data_dir
    from mmcl.train.run import train

    cfg = load_config(args.config, args.overrides)
    data_dir(cfg.data.data_dir)  # a missing data folder fails here, with the fetch command
    metrics = train(cfg, fresh=args.fresh)
    print("\n" + retrieval_report(metrics))
    print(f"\nlogs: {metrics['run_dir']}/logs, tensorboard: {metrics['run_dir']}/tensorboard")
    return 0


def retrieval_report(metrics: dict) -> str:
    """The held-out retrieval table of a finished run: before training, after, and chance (from metrics.json)."""
    from mmcl.train.evaluate import format_table

    splits = metrics.get("splits", {})
    header = (f"Held-out retrieval, % (test split {splits.get('test', '?')} images, never trained on; "
              f"run {metrics['run_dir']})")
    return header + "\n" + format_table(metrics.get("test_retrieval_before"), metrics["test_retrieval"],
                                         metrics.get("test_retrieval_chance_R@5"))
