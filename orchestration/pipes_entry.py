"""The training process launched by the `trained_model` asset through Dagster Pipes.

    python -m orchestration.pipes_entry train --config configs/tiny.yaml --set data.data_dir=... [--fresh]

It is the Pipes side only: it imports mmcl and the small `dagster_pipes` package, never `dagster`, so the
same entry runs in a local subprocess, a Kubernetes pod or by hand (outside Dagster it just trains and
prints the metrics). It trains with mmcl.train.run.train (resuming from checkpoints/last.ckpt when a retry
re-launches the same config) and reports the run directory, checkpoint and metrics as the materialisation.

Under DDP every rank runs this entry (torchrun, or Lightning re-launching the command for each local GPU);
only global rank 0 opens the Pipes channel and reports, the others just train: one materialisation per
training, and one writer on the channel (a pod's stdout is shared by all its ranks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestration.pipes_entry", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (or resume) an mmcl config and report it to Dagster")
    train.add_argument("--config", required=True)
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--fresh", action="store_true")
    train.add_argument("--error-file", default=None,
                       help="where a permanent error (bad config or data: mmcl.errors.UserError) is written as JSON, "
                            "so the launcher fails at once with its message instead of retrying")
    return parser.parse_args(argv)


def summarise(metrics: dict[str, Any]) -> dict[str, Any]:
    """Flat, JSON-safe metadata: what the asset page shows for a training run."""
    out: dict[str, Any] = {k: metrics.get(k) for k in ("run_dir", "config_hash", "global_step", "epochs",
                                                        "fit_seconds", "train_samples_per_second", "resumed_from_step")}
    out["checkpoint"] = f"{metrics['run_dir']}/model.pt"
    out["splits"] = json.dumps(metrics.get("splits"))
    for key, value in (metrics.get("final") or {}).items():
        out[key.replace("/", "_")] = float(value)
    for direction, table in (metrics.get("test_retrieval") or {}).items():
        if isinstance(table, dict) and "rsum" in table:
            out[f"train_test_rsum_{direction.replace('->', '2')}"] = float(table["rsum"])
    return {k: v for k, v in out.items() if v is not None}


def run_train(args: argparse.Namespace, pipes: Any | None) -> dict[str, Any]:
    from mmcl.config import load_config
    from mmcl.data.paths import data_dir
    from mmcl.train.run import train

    cfg = load_config(args.config, args.overrides)
    data_dir(cfg.data.data_dir)  # a missing train view fails here, naming the path
    if pipes is not None:
        pipes.log.info(f"training {cfg.run_dir()} (config hash {cfg.config_hash()}, objective {cfg.objective.name})")
    metrics = train(cfg, fresh=args.fresh)
    summary = summarise(metrics)
    if pipes is not None:
        pipes.report_asset_materialization(metadata=summary, data_version=metrics["config_hash"])
    return summary


# RANK/GROUP_RANK: torchrun (global rank, node rank); LOCAL_RANK/NODE_RANK: Lightning's own launcher, which
# re-runs this command for local GPUs 1..N-1 with LOCAL_RANK set (RANK is only set later, inside the process)
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")


def is_reporting_rank(environ: dict[str, str] | None = None) -> bool:
    """True in the one process that reports to Dagster: global rank 0, or a process outside DDP."""
    env = os.environ if environ is None else environ
    return all(env.get(name, "0") in ("", "0") for name in RANK_VARIABLES)


PERMANENT_ERROR_EXIT = 2  # the exit code of a permanent error (as `mmcl` itself uses for UserError)


def _write_error(path: str | None, exc: Exception) -> None:
    if path:
        from mmcl.data.manifest import atomic_write_text

        atomic_write_text(Path(path), json.dumps({"kind": type(exc).__name__, "message": str(exc)}) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    from mmcl.errors import UserError

    try:
        if not is_reporting_rank():  # a DDP rank other than 0: train (the collectives need it), report nothing
            run_train(args, None)
        elif not PipesEnvVarParamsLoader().is_dagster_pipes_process():  # by hand: train and print, no Dagster
            print(json.dumps(run_train(args, None), indent=2))
        else:
            with open_dagster_pipes() as pipes:
                try:
                    run_train(args, pipes)
                except UserError as exc:
                    pipes.log.error(f"{type(exc).__name__}: {exc}")
                    raise
    except UserError as exc:  # a bad config or bad data: retrying cannot help, and the message is the answer
        _write_error(args.error_file, exc)
        print(f"error: {exc}", file=sys.stderr)
        return PERMANENT_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
