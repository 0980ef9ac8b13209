"""`mmcl models ...`: the champion/challenger registry (mmcl.registry_models) from the terminal.

    mmcl models list                                  every model, its status and gated metrics
    mmcl models show tiny-1ab76797de8c                one entry as JSON (plus its gate against the champion)
    mmcl models register runs/tiny-1ab76797de8c       add a trained run as a challenger
    mmcl models promote tiny-1ab76797de8c             champion if not worse (tolerances: --tolerance m=x; the
                                                      metrics not named keep their default tolerance)
    mmcl models promote tiny-1ab76797de8c --force --reason "why"    past the gate; who and why are recorded
    mmcl models rollback [--reason "why"]             the previous champion is champion again

Registering this module also adds the "model" kind to `mmcl lineage`: `mmcl lineage model <id>`.
The store is --store, else $MMCL_MODEL_STORE, else ./models. "Who" is --by, else the login name.
"""

from __future__ import annotations

import argparse
import json

from mmcl.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    import mmcl.model_card  # noqa: F401  (registers lineage kind "model" for `mmcl lineage model <id>`)

    parser = subparsers.add_parser("models", help="champion/challenger model registry: list, promote, rollback",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=None, help="registry folder (default $MMCL_MODEL_STORE or ./models)")
    sub = parser.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="every registered model").set_defaults(func=run_list)
    show = sub.add_parser("show", help="one model's registry entry")
    show.add_argument("model")
    show.set_defaults(func=run_show)
    reg = sub.add_parser("register", help="register a trained run directory as a challenger")
    reg.add_argument("run_dir")
    reg.add_argument("--id", default=None, help="model id (default: the run directory's name)")
    reg.set_defaults(func=run_register)
    promote = sub.add_parser("promote", help="make a challenger the champion if it is not worse")
    promote.add_argument("model")
    promote.add_argument("--tolerance", action="append", default=[], metavar="METRIC=X",
                         help="how much worse one gated metric may be, e.g. sts_avg=1.0 (repeatable; the others keep "
                              "their default: sts_avg=1.0 retrieval_rsum=10.0)")
    promote.add_argument("--force", action="store_true",
                         help="promote even if the gate fails (needs --reason; recorded as forced, with who and why)")
    promote.add_argument("--reason", default=None, help="why (kept in the registry's event log)")
    promote.add_argument("--by", default=None, help="who (default: the login name)")
    promote.set_defaults(func=run_promote)
    rollback = sub.add_parser("rollback", help="restore the previous champion")
    rollback.add_argument("--reason", default=None, help="why (kept in the registry's event log)")
    rollback.add_argument("--by", default=None, help="who (default: the login name)")
    rollback.set_defaults(func=run_rollback)


def _registry(args: argparse.Namespace):
    from mmcl.registry_models import ModelRegistry

    return ModelRegistry(args.store)


def run_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    entries = registry.list()
    if not entries:
        print(f"no models registered in {registry.root}")
        return 0
    for entry in entries:
        metrics = ", ".join(f"{k}={v['value']:.2f}" if v.get("value") is not None else f"{k}=–"
                            for k, v in sorted(entry.get("metrics", {}).items()))
        print(f"{entry['status']:<11} {entry['id']}  dataset {entry.get('dataset_md5') or '–'}  {metrics}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    entry = registry.entry(args.model)
    print(json.dumps({**entry, "gate": registry.gate(args.model).to_dict()}, indent=2, sort_keys=True))
    return 0


def run_register(args: argparse.Namespace) -> int:
    from pathlib import Path

    run_dir = Path(args.run_dir)
    entry = _registry(args).register(run_dir.name if args.id is None else args.id, run_dir)
    print(f"registered {entry['id']} as {entry['status']} ({entry['model_file']})")
    return 0


def _tolerances(items: list[str]) -> dict[str, float] | None:
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:  # "sts_avg=x": reported below as not METRIC=NUMBER
            sep = ""
        if not sep:
            raise UserError(f"--tolerance expects METRIC=NUMBER, got {item!r}")
    return out


def _who(args: argparse.Namespace) -> str:
    import getpass

    if args.by:
        return args.by
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown user"


def run_promote(args: argparse.Namespace) -> int:
    if args.force and not args.reason:
        raise UserError("--force needs --reason: say why the gate is bypassed (kept in the registry's event log)")
    gate = _registry(args).promote(args.model, _tolerances(args.tolerance), force=args.force,
                                   by=_who(args) if args.force else args.by, reason=args.reason)
    forced = f"; forced past the gate by {_who(args)}: {args.reason}" if args.force and not gate.passed else ""
    print(f"{args.model} is the champion ({gate.summary()}{forced})")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    current, restored = _registry(args).rollback(by=_who(args), reason=args.reason)
    print(f"rolled back {current}; champion is {restored} again")
    return 0
