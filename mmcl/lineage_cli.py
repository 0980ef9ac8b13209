"""`mmcl lineage <kind> <key>`: print a lineage record (kinds from mmcl.lineage.KINDS).

    mmcl lineage dataset 8f6fa402            a dataset version by DVC md5 (full, with .dir, or a prefix)
    mmcl lineage dataset 8f6fa402 --json     the record as JSON
    mmcl lineage list dataset                every dataset version recorded (unreadable files: a warning each)
    mmcl lineage model demo-trimodal-1a2b3c  a model: data, code, config, teacher, evaluations, overrides
    mmcl lineage list model                  every model recorded
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    import mmcl.model_card  # noqa: F401  (registers the `model` kind, so the help lists it)
    from mmcl.lineage import KINDS

    parser = subparsers.add_parser("lineage", help="where a dataset version (or model) came from",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", help=f"one of {sorted(KINDS)}, or `list`")
    parser.add_argument("key", help="the record key (dataset: DVC md5 or a unique prefix); for `list`: the kind")
    parser.add_argument("--store", default=None, help="lineage store (default $MMCL_LINEAGE_DIR or ./lineage)")
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import mmcl.model_card  # noqa: F401  (the `model` kind's formatter)
    from mmcl.lineage import FORMATTERS, LineageStore

    store = LineageStore(args.store)
    if args.kind == "list":
        records, problems = store.scan(args.key)
        for record in records:
            print(record["key"])
        for problem in problems:  # the rest is still listed; exit 0: listing worked, a record needs care
            print(f"mmcl lineage: warning: {problem}", file=sys.stderr)
        return 0
    record = store.read(args.kind, args.key)
    formatter = FORMATTERS.get(args.kind)
    print(json.dumps(record, indent=2, sort_keys=True) if args.json or formatter is None else formatter(record))
    return 0
