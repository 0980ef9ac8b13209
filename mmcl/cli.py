"""The `mmcl` command. Each subcommand lives beside the code it drives and registers itself here.

A module in SUBCOMMANDS exposes `register(subparsers)`; it must import only argparse-level things at
module import so `mmcl --help` stays fast, and import torch & co. inside the function it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mmcl.errors import UserError

# module path -> its subcommands are added by module.register(subparsers)
SUBCOMMANDS = [
    "mmcl.train.cli",      # mmcl train
    "mmcl.eval.cli",       # mmcl eval {sts,senteval,retrieval,geometry}, mmcl export
    "mmcl.validate.cli",   # mmcl validate
    "mmcl.monitor.cli",    # mmcl drift
    "mmcl.lineage_cli",    # mmcl lineage
    "mmcl.data.cli",       # mmcl data ...
    "mmcl.demo",           # mmcl demo
    "mmcl.registry_cli",   # mmcl models {list,show,register,promote,rollback}; lineage kind "model"
    "mmcl.index.cli",      # mmcl index build, mmcl search, mmcl serve
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):  # that room is not built yet: no subcommand
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"mmcl {args.command}: error: {exc}", file=sys.stderr)
        return 2
