"""`mmcl data ...`: the data directory, the landing zone and dataset versions.

    mmcl data check [--sha256]                   is the data directory complete (and intact)?
    mmcl data fetch-help                         how to get the public data (nothing downloads at run time)
    mmcl data simulate-drops --out data/landing --n-drops 4 [--per-drop N] [--start K] [--seed S]
    mmcl data simulate-drops --out data/landing --shifted --name shift-0001 --records 100 \\
        --caption-fraction 0.5 --corruption blur --level 0.5
    mmcl data ingest data/landing --out data/raw --rejected data/rejected
    mmcl data version data/validated --dataset data/dataset [--no-dvc] [--no-push] [--remote NAME]
    mmcl data export data/dataset --out data/train_view   a dataset version as a Flickr8k folder
    mmcl data remote URL [--name NAME] [--local]   set the default DVC remote (s3://..., /mnt/dvc, ...)
"""

from __future__ import annotations

import argparse
import json

from mmcl.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="data directory, landing zone drops, dataset versions",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="data_command", required=True)

    check = sub.add_parser("check", help="check the data directory")
    check.add_argument("--data-dir", help="data root (default $MMCL_DATA_DIR or ../shared/data)")
    check.add_argument("--sha256", action="store_true", help="also verify every file against MANIFEST.sha256")
    check.set_defaults(func=run_check)
    sub.add_parser("fetch-help", help="how to fetch the public data").set_defaults(func=run_fetch_help)

    sim = sub.add_parser("simulate-drops", help="write landing-zone drops cut from the Flickr8k triples")
    sim.add_argument("--out", required=True, help="landing zone folder")
    sim.add_argument("--n-drops", type=int, default=4, help="clean drops in the whole sequence")
    sim.add_argument("--per-drop", type=int, default=None, help="records per drop (default: all triples / n-drops)")
    sim.add_argument("--start", type=int, default=1, help="first drop to write (later drops 'arrive later')")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--prefix", default="drop", help="drop name prefix: <prefix>-0001")
    sim.add_argument("--shifted", action="store_true", help="write one shifted drop instead (drift work)")
    sim.add_argument("--name", default="shift-0001", help="shifted drop name")
    sim.add_argument("--records", type=int, default=100, help="records in the shifted drop")
    sim.add_argument("--topic", default=None, help="shifted drop: only triples with a caption holding this word "
                                                   "(a topic shift with aligned pairs)")
    sim.add_argument("--caption-fraction", type=float, default=0.5, help="captions replaced by MR sentences")
    sim.add_argument("--corruption", choices=("blur", "noise", "none"), default="blur")
    sim.add_argument("--level", type=float, default=0.5, help="corruption level in [0, 1]")
    sim.add_argument("--data-dir", help="data root (default $MMCL_DATA_DIR or ../shared/data)")
    sim.set_defaults(func=run_simulate)

    ingest = sub.add_parser("ingest", help="normalise landing-zone drops (canonical manifest + hashes)")
    ingest.add_argument("sources", nargs="+", help="drops or landing zones")
    ingest.add_argument("--out", required=True, help="raw area: <out>/<drop>")
    ingest.add_argument("--rejected", required=True, help="area for drops whose manifest cannot be read")
    ingest.set_defaults(func=run_ingest)

    version = sub.add_parser("version", help="add accepted drops to the dataset shards; dvc add + push; lineage")
    version.add_argument("accepted", help="accepted area (output of `mmcl validate --accepted`)")
    version.add_argument("--dataset", required=True, help="dataset folder of shards (DVC-tracked)")
    version.add_argument("--shard-size", type=int, default=256)
    version.add_argument("--lineage", default=None, help="lineage store (default $MMCL_LINEAGE_DIR or ./lineage)")
    version.add_argument("--rejected", default=None, help="rejected area, to list rejected drops in the lineage")
    version.add_argument("--no-dvc", action="store_true",
                         help="do not `dvc add` (inside a dvc.yaml stage DVC caches the output itself)")
    version.add_argument("--no-push", action="store_true", help="dvc add but do not push")
    version.add_argument("--remote", default=None, help="DVC remote to push to (default: the default remote)")
    version.set_defaults(func=run_version)

    export = sub.add_parser("export", help="lay a dataset version out as a Flickr8k folder (for mmcl train)")
    export.add_argument("dataset", help="dataset folder of shards")
    export.add_argument("--out", required=True, help="data root to write: <out>/flickr8k_subset1000_tri")
    export.set_defaults(func=run_export)

    remote = sub.add_parser("remote", help="set the default DVC remote (and init DVC if needed)")
    remote.add_argument("url", help="s3://bucket/path, /mnt/store, ... ; relative paths are relative to .dvc/")
    remote.add_argument("--name", default="local")
    remote.add_argument("--local", action="store_true", help="write .dvc/config.local (not committed)")
    remote.set_defaults(func=run_remote)


def run_check(args: argparse.Namespace) -> int:
    from mmcl.data.paths import data_dir

    root = data_dir(args.data_dir)
    expected = {"flickr8k_subset1000_tri/images": "*.jpg", "flickr8k_subset1000_tri/audio_tts": "*.mp3",
                "senteval/downstream/STS": "*", "senteval/downstream/MR": "rt-polarity.*"}
    ok = True
    for folder, pattern in expected.items():
        count = len(list((root / folder).glob(pattern))) if (root / folder).is_dir() else 0
        ok &= count > 0
        print(f"{'ok     ' if count else 'MISSING'} {root / folder} ({count} {pattern})")
    if args.sha256:
        ok &= _verify_sha256(root)
    return 0 if ok else 1


def _verify_sha256(root) -> bool:
    from mmcl.data.manifest import sha256_file

    listing = root / "MANIFEST.sha256"
    if not listing.is_file():
        print(f"MISSING {listing}")
        return False
    bad = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        path = root / name
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(name)
    print(f"sha256: {len(bad)} bad file(s)" + (f": {bad[:10]}" if bad else ""))
    return not bad


def run_fetch_help(args: argparse.Namespace) -> int:
    from mmcl.data.paths import ENV_VAR, FETCH_HELP, default_data_dir

    print(FETCH_HELP.format(env=ENV_VAR, default=default_data_dir()))
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from mmcl.data.drops import simulate_drops, simulate_shifted_drop

    if args.shifted:
        corruption = None if args.corruption == "none" else args.corruption
        drops = [simulate_shifted_drop(args.out, args.name, records=args.records, topic=args.topic,
                                       caption_fraction=args.caption_fraction,
                                       corruption=corruption, level=args.level, seed=args.seed, root=args.data_dir)]
    else:
        drops = simulate_drops(args.out, n_drops=args.n_drops, per_drop=args.per_drop, seed=args.seed,
                               start=args.start, prefix=args.prefix, root=args.data_dir)
    for drop in drops:
        print(drop)
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    from mmcl.data.landing import ingest_drops

    results = ingest_drops(args.sources, args.out, args.rejected)
    for result in results:
        print(f"{result.drop}: {result.status} -> {result.path}" + (f" ({result.reason})" if result.reason else ""))
    return 0


def run_version(args: argparse.Namespace) -> int:
    from mmcl.data.versioning import version_dataset

    if args.shard_size < 1:
        raise UserError("--shard-size must be >= 1")
    record = version_dataset(args.accepted, args.dataset, shard_size=args.shard_size, lineage_dir=args.lineage,
                             use_dvc=not args.no_dvc, push=not args.no_push, remote=args.remote,
                             rejected_root=args.rejected)
    counts = record["row_counts"]
    print(f"dataset version {record['md5']}: {counts['records']} records in {counts['shards']} shards "
          f"from {len(record['source_drops'])} drop(s); lineage: {record['lineage_file']}")
    print(json.dumps({"md5": record["md5"], "splits": counts["splits"]}))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from mmcl.data.shards import export_flickr_layout

    counts = export_flickr_layout(args.dataset, args.out)
    print(f"exported {counts} to {args.out}/flickr8k_subset1000_tri (train with --set data.data_dir={args.out})")
    return 0


def run_remote(args: argparse.Namespace) -> int:
    from mmcl.data.versioning import DvcRepo

    try:
        repo = DvcRepo.find(".")
    except UserError:
        repo = DvcRepo(".")
        repo.init()
    repo.set_remote(args.url, args.name, local=args.local)
    print(f"default DVC remote: {args.name} -> {repo.remote_url(args.name)}")
    return 0
