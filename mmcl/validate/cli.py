"""`mmcl validate DROP_DIR [DROP_DIR ...] --output report.json`

DROP_DIR is a drop (a folder with manifest.jsonl or manifest.csv) or a landing zone (a folder of drops).
Exit status: 0 when every drop passes (warnings allowed), 1 when a blocking expectation fails (a row is
quarantined or a drop rejected), 2 on a usage error. `--fail-on rejected` exits 1 only for a rejected
drop (pipelines that quarantine and go on), `--fail-on never` always 0.

With --accepted/--quarantine/--rejected the rows are routed: accepted rows (and their media) to
--accepted/<drop>, failing rows with their reasons to --quarantine/<drop>, unreadable drops to
--rejected/<drop>. --dataset adds an existing dataset version's records to the cross-drop checks
(ids already versioned, train/test content leakage, near-duplicate captions).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmcl.errors import UserError

FAIL_ON = ("blocking", "rejected", "never")


def register(subparsers: argparse._SubParsersAction) -> None:
    from mmcl.validate.media import MEDIA_CHECK_MODES
    from mmcl.validate.suites import MAX_CAPTION_CHARS

    parser = subparsers.add_parser("validate", help="validate drops with Great Expectations; quarantine bad rows",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drops", nargs="+", metavar="DROP_DIR", help="a drop folder or a folder of drops")
    parser.add_argument("--output", "-o", required=True, help="report JSON to write")
    parser.add_argument("--accepted", help="area for accepted rows (needs --quarantine and --rejected)")
    parser.add_argument("--quarantine", help="area for failing rows and their reasons")
    parser.add_argument("--rejected", help="area for drops rejected whole")
    parser.add_argument("--dataset", help="dataset folder (shards) whose records the drops must not clash with")
    parser.add_argument("--media-check", choices=MEDIA_CHECK_MODES, default="full",
                        help="full: decode every image/audio; header: open headers; exists: file present")
    parser.add_argument("--workers", type=int, default=None, help="threads decoding media (default min(4, cpus))")
    parser.add_argument("--max-caption-chars", type=int, default=MAX_CAPTION_CHARS,
                        help="warn above this caption length")
    parser.add_argument("--severity", action="append", default=[], metavar="CHECK=blocking|warning",
                        help="change a check's severity, e.g. caption_not_near_duplicate=blocking (repeatable)")
    parser.add_argument("--fail-on", choices=FAIL_ON, default="blocking", help="what makes the exit status 1")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the summary line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmcl.validate.columns import check_workers
    from mmcl.validate.gate import Areas, run_gate
    from mmcl.validate.report import REJECTED, write_report

    check_workers(args.workers)  # before any drop is read
    routed = [args.accepted, args.quarantine, args.rejected]
    if any(routed) and not all(routed):
        raise UserError("--accepted, --quarantine and --rejected go together (every row must land somewhere)")
    areas = Areas(*map(Path, routed)) if all(routed) else None
    severities = dict(_pair(item) for item in args.severity)
    reports = run_gate(args.drops, areas=areas, dataset_dir=args.dataset, media_check=args.media_check,
                       workers=args.workers, max_caption_chars=args.max_caption_chars, severities=severities)
    document = write_report(args.output, reports)
    if not args.quiet:
        for report in reports:
            print(report.describe())
    summary = document["summary"]
    print(f"validated {summary['drops']} drop(s): {summary['accepted']}/{summary['rows']} rows accepted, "
          f"{summary['quarantined']} quarantined, {summary['rejected']} drop(s) rejected; report: {args.output}")
    if args.fail_on == "blocking" and summary["blocking_failed"]:
        return 1
    if args.fail_on == "rejected" and any(r.status == REJECTED for r in reports):
        return 1
    return 0


def _pair(item: str) -> tuple[str, str]:
    name, sep, severity = item.partition("=")
    if not sep:
        raise UserError(f"--severity expects CHECK=blocking|warning, got {item!r}")
    return name.strip(), severity.strip()
