"""`mmcl demo`: train the tri-modal demo configuration on the Flickr8k triples and print held-out
retrieval (R@1/5/10, every direction) before and after training, beside the chance level.

    make demo      # = .venv/bin/python -m mmcl demo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train the demo configuration and print held-out retrieval before/after")
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--fresh", action="store_true", help="retrain even if this config already finished")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import lightning as L

    from mmcl.config import load_config
    from mmcl.data.paths import data_dir
    from mmcl.train.datamodule import TripleDataModule
    from mmcl.train.evaluate import chance_recall, embed_records, format_table, retrieval_table
    from mmcl.train.module import ContrastiveModule
    from mmcl.train.run import atomic_write_text, train

    cfg = load_config(args.config, args.overrides)
    data_dir(cfg.data.data_dir)
    L.seed_everything(cfg.seed, verbose=False)
    untrained = ContrastiveModule(cfg.to_dict())
    dm = TripleDataModule(cfg.data, untrained.model, seed=cfg.seed)
    dm.setup()
    print(f"data: {dm.describe()} images (train / val=dev / test held out)", flush=True)
    embed_kw = dict(image_transform=dm.eval_loaders.image_transform, audio_sample_rate=cfg.data.audio_sample_rate,
                    audio_seconds=cfg.data.audio_seconds)
    emb = embed_records(untrained.model, dm.records["test"], tuple(cfg.data.modalities), **embed_kw)
    before, chance = retrieval_table(emb), chance_recall(emb, k=5)
    del untrained

    metrics = train(cfg, fresh=args.fresh)
    after = metrics["test_retrieval"]
    table = format_table(before, after, chance)
    header = (f"Held-out retrieval on {len(dm.records['test'])} test images "
              f"({sum(len(r.captions) for r in dm.records['test'])} captions), % (run: {metrics['run_dir']})")
    print("\n" + header + "\n" + table)
    report = Path(metrics["run_dir"]) / "demo_retrieval.json"
    atomic_write_text(report, json.dumps({"before": before, "after": after, "chance_R@5": chance}, indent=2))
    print(f"\nwritten: {report}; logs: {metrics['run_dir']}/logs, tensorboard: {metrics['run_dir']}/tensorboard")
    return 0
