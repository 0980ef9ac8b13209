"""`mmcl train --config configs/<name>.yaml [--set key=value ...]`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (or resume) a model from a YAML config")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted, value parsed as YAML); repeatable")
    p.add_argument("--fresh", action="store_true", help="discard this config's run directory and start over")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out retrieval evaluation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from mmcl.config import load_config
    from mmcl.data.paths import data_dir

    cfg = load_config(args.config, args.overrides)
    data_dir(cfg.data.data_dir)  # a missing data directory fails here, naming the path
    from mmcl.train.run import train

    metrics = train(cfg, evaluate_retrieval=not args.no_eval, fresh=args.fresh)
    print(json.dumps({k: metrics.get(k) for k in ("run_dir", "global_step", "fit_seconds", "train_samples_per_second")}))
    return 0
