"""`mmcl drift`: embedding drift between a reference and a current set, and `mmcl drift model-change`.

    mmcl drift --reference ref.npy --current cur.npy --output out.json --workspace monitoring/ --seed 0
    mmcl drift --reference ref.txt --current cur.txt --model all-minilm-l6-v2 --output out.json
    mmcl drift --reference ref.npy --current cur.npy --reference-groups ref_ids.txt \
        --current-groups cur_ids.txt --output out.json      # several rows per item: one row per item
    mmcl drift model-change --old old.npy --new new.npy --output change.json
    mmcl drift model-change --probe probe.txt --old-model runs/a --new-model runs/b --output change.json
    mmcl drift alignment --reference ref.npz --current cur.npz --output align.json --plot align.png

Inputs are .npy matrices [N, D] (same model for both sets) or, with --model, text files with one
sentence per line embedded by that model (packaged short name, mmcl run dir/checkpoint or HF folder).
`alignment` tests the paired similarities (caption-image, ...) of a drop against a reference's
(mmcl/monitor/alignment.py); its .npz inputs hold `<modality>` [N, D] and `<modality>_ids` per row.
With --workspace, every check also writes an Evidently Report (HTML) and snapshot into the local
Evidently workspace (`evidently ui --workspace DIR` shows the history), appends to
DIR/drift_history.jsonl and redraws DIR/drift_history.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ALL_METHODS = ("mmd", "classifier", "centroid")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "drift",
        help="embedding drift check (and model-change comparison)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--reference", help="reference embeddings .npy (or .txt with --model)")
    parser.add_argument("--current", help="current embeddings .npy (or .txt with --model)")
    parser.add_argument("--output", help="verdict JSON to write")
    parser.add_argument(
        "--model", help="embed .txt inputs with this text model (short name, run dir, HF folder)"
    )
    parser.add_argument(
        "--reference-groups",
        help="item id per reference row (.txt one per line, or 1-D .npy): rows averaged per item",
    )
    parser.add_argument("--current-groups", help="item id per current row (e.g. image id of each caption)")
    parser.add_argument("--methods", nargs="+", default=list(ALL_METHODS), choices=ALL_METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--max-samples", type=int, default=1000, help="MMD per-side subsample cap (O(n^2))")
    parser.add_argument("--permutations", type=int, default=500, help="MMD pooled permutations")
    parser.add_argument("--classifier-samples", type=int, default=1000, help="classifier fixed size per side")
    parser.add_argument("--pca-components", type=int, default=20, help="PCA width before the classifier")
    parser.add_argument("--min-samples", type=int, default=20, help="refuse sets with fewer rows")
    parser.add_argument(
        "--workspace", help="local Evidently workspace folder (report, snapshot, history, PNG)"
    )
    parser.add_argument("--html", help="write the Evidently Report HTML here (default: in the workspace)")
    parser.add_argument("--no-report", action="store_true", help="skip the Evidently Report (t-SNE: slow)")
    parser.add_argument("--name", default=None, help="label of this check in history and snapshot")
    parser.add_argument("--fail-on-drift", action="store_true", help="exit 1 when drift is detected")
    parser.set_defaults(func=run_drift)
    drift_sub = parser.add_subparsers(dest="drift_command")
    change = drift_sub.add_parser(
        "model-change", help="old vs new model on a fixed probe set (CKA, Procrustes)"
    )
    change.add_argument("--old", help="old-model embeddings of the probe set (.npy)")
    change.add_argument("--new", help="new-model embeddings of the same probe rows (.npy)")
    change.add_argument("--probe", help="probe sentences (.txt, one per line) for --old-model/--new-model")
    change.add_argument("--old-model", help="old text model (short name, run dir, HF folder)")
    change.add_argument("--new-model", help="new text model")
    change.add_argument("--output", required=True)
    change.add_argument("--seed", type=int, default=0)
    change.set_defaults(func=run_model_change)
    align = drift_sub.add_parser(
        "alignment", help="paired-similarity (cross-modal alignment) drift of a drop against a reference"
    )
    align.add_argument("--reference", required=True, help=".npz: <modality> [N, D], <modality>_ids per row")
    align.add_argument("--current", required=True, help=".npz of the drop, same model, same layout")
    align.add_argument("--output", required=True, help="verdict JSON to write")
    align.add_argument("--plot", help="PNG of the paired-similarity densities")
    align.add_argument("--alpha", type=float, default=0.05)
    align.add_argument("--permutations", type=int, default=999)
    align.add_argument("--top-k", type=int, default=20, help="suspect rows named per pair")
    align.add_argument("--seed", type=int, default=0)
    align.add_argument("--fail-on-drift", action="store_true", help="exit 1 when alignment drift is detected")
    align.set_defaults(func=run_alignment)


def _read_lines(path: Path) -> list[str]:
    from mmcl.errors import DataError

    if not path.is_file():
        raise DataError(path, "text file does not exist")
    lines = []
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise DataError(path, f"not UTF-8 ({exc.reason})", row=line_no) from exc
            if text:
                lines.append(text)
    return lines


def load_input(path_str: str | None, role: str, model: str | None):
    """An embedding matrix from .npy, or from a .txt embedded by `model`."""
    from mmcl.errors import UserError
    from mmcl.monitor.validate_inputs import load_embeddings

    if not path_str:
        raise UserError(f"--{role} is required")
    path = Path(path_str)
    if path.suffix == ".npy":
        return load_embeddings(path)
    if path.suffix == ".txt":
        if not model:
            raise UserError(f"--{role} {path} is a text file: give --model to embed it")
        from mmcl.eval.embedders import load_text_embedder

        return load_text_embedder(model, show_progress=False).encode(_read_lines(path))
    raise UserError(f"--{role} {path}: expected .npy embeddings or a .txt file with --model")


def load_groups(path_str: str | None):
    """Item ids, one per embedding row, from .txt (one per line) or a 1-D .npy; None when not given."""
    from mmcl.errors import DataError

    if not path_str:
        return None
    path = Path(path_str)
    if path.suffix == ".npy":
        from mmcl.monitor.validate_inputs import np_load_plain

        ids = np_load_plain(path)
        if ids.ndim != 1:
            raise DataError(path, f"group ids must be a 1-D array, got shape {tuple(ids.shape)}")
        return ids
    return _read_lines(path)


def write_json(data: dict, path: Path) -> None:
    from mmcl.data.manifest import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2) + "\n")  # readers never see a half-written verdict


def _settings(args: argparse.Namespace):
    from mmcl.errors import UserError
    from mmcl.monitor.detector import DriftSettings
    from mmcl.monitor.evidently_drift import ClassifierSettings
    from mmcl.monitor.mmd import HARD_CAP, MmdSettings

    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha must be in (0, 1), got {args.alpha}")
    if not 2 <= args.max_samples <= HARD_CAP:
        raise UserError(
            f"--max-samples must be in [2, {HARD_CAP}] (the MMD kernel is O(n^2)), got {args.max_samples}"
        )
    if args.permutations < 1 or args.pca_components < 1 or args.classifier_samples < args.min_samples:
        raise UserError(
            "--permutations and --pca-components must be >= 1, --classifier-samples >= --min-samples"
        )
    return DriftSettings(
        alpha=args.alpha,
        seed=args.seed,
        min_samples=args.min_samples,
        mmd=MmdSettings(n_permutations=args.permutations, max_samples=args.max_samples),
        classifier=ClassifierSettings(
            max_samples=args.classifier_samples, pca_components=args.pca_components, alpha=args.alpha
        ),
    )


def _report(result: dict, ref, cur, args: argparse.Namespace, settings) -> dict:
    """Evidently Report HTML + workspace snapshot for the check in `result`."""
    from mmcl.monitor.evidently_drift import l2_normalise, run_report, save_to_workspace, snapshot_score

    meta = {"mmcl_drift_detected": result["drift_detected"], "name": args.name or ""}
    for name, res in result["methods"].items():
        meta[f"{name}_score"] = res["score"]
        if res["p_value"] is not None:
            meta[f"{name}_p_value"] = res["p_value"]
    snapshot = run_report(
        l2_normalise(ref), l2_normalise(cur), settings=settings.classifier, seed=settings.seed, **meta
    )
    info = {"evidently_score": snapshot_score(snapshot)}
    html = Path(args.html) if args.html else None
    if html is None and args.workspace:
        html = Path(args.workspace) / "reports" / f"drift_{result['timestamp'].replace(':', '')}.html"
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html))
        info["html"] = str(html)
    if args.workspace:
        info["workspace"] = str(args.workspace)
        info["snapshot_id"] = save_to_workspace(snapshot, args.workspace)
    return info


def run_drift(args: argparse.Namespace) -> int:
    from mmcl.errors import UserError
    from mmcl.monitor.detector import detect_drift
    from mmcl.monitor.plots import HISTORY_FILE, append_history, plot_drift_history

    if not args.output:
        raise UserError("--output is required (the verdict JSON)")
    settings = _settings(args)
    ref = load_input(args.reference, "reference", args.model)
    cur = load_input(args.current, "current", args.model)
    result = detect_drift(
        ref,
        cur,
        methods=tuple(args.methods),
        settings=settings,
        reference_source=str(args.reference),
        current_source=str(args.current),
        reference_groups=load_groups(args.reference_groups),
        current_groups=load_groups(args.current_groups),
    )
    result["name"] = args.name
    if not args.no_report and (args.workspace or args.html):
        result["report"] = _report(result, ref, cur, args, settings)
    if args.workspace:
        history = append_history(result, Path(args.workspace) / HISTORY_FILE)
        result["plot"] = str(plot_drift_history(history, Path(args.workspace) / "drift_history.png"))
    write_json(result, Path(args.output))
    verdict = "DRIFT" if result["drift_detected"] else "no drift"
    summary = ", ".join(
        f"{n}: score={r['score']:.4g}" + (f" p={r['p_value']:.3g}" if r["p_value"] is not None else "")
        for n, r in result["methods"].items()
    )
    print(f"{verdict} ({result['decision_rule']}); {summary}; wrote {args.output}")
    return 1 if (args.fail_on_drift and result["drift_detected"]) else 0


def run_model_change(args: argparse.Namespace) -> int:
    from mmcl.errors import UserError
    from mmcl.monitor.model_change import compare_models
    from mmcl.monitor.validate_inputs import check_embeddings

    if args.probe:
        if not (args.old_model and args.new_model):
            raise UserError("--probe needs --old-model and --new-model")
        from mmcl.eval.embedders import load_text_embedder

        sentences = _read_lines(Path(args.probe))
        old = load_text_embedder(args.old_model, show_progress=False).encode(sentences)
        new = load_text_embedder(args.new_model, show_progress=False).encode(sentences)
        sources = (f"{args.old_model} on {args.probe}", f"{args.new_model} on {args.probe}")
    else:
        old, new = load_input(args.old, "old", None), load_input(args.new, "new", None)
        sources = (args.old, args.new)
    old, new = check_embeddings(old, sources[0]), check_embeddings(new, sources[1])
    result = {**compare_models(old, new, seed=args.seed), "old": sources[0], "new": sources[1]}
    write_json(result, Path(args.output))
    print(
        f"linear CKA {result['linear_cka']:.4f} (shuffled rows: {result['cka_shuffled_baseline']:.4f}), "
        f"Procrustes similarity {result['procrustes_similarity']:.4f}; wrote {args.output}"
    )
    return 0


def run_alignment(args: argparse.Namespace) -> int:
    from mmcl.monitor.alignment import (
        AlignmentSettings,
        alignment_drift,
        load_alignment_inputs,
        pairs_from_embeddings,
    )
    from mmcl.monitor.plots import plot_alignment

    settings = AlignmentSettings(alpha=args.alpha, n_permutations=args.permutations, seed=args.seed,
                                 top_k=args.top_k)
    reference = pairs_from_embeddings(*load_alignment_inputs(args.reference))
    current = pairs_from_embeddings(*load_alignment_inputs(args.current))
    result = {**alignment_drift(reference, current, settings=settings),
              "reference": str(args.reference), "current": str(args.current)}
    if args.plot:
        result["plot"] = str(plot_alignment(result, Path(args.plot)))
    write_json(result, Path(args.output))
    summary = ", ".join(f"{n}: p={r['p_value']:.3g}{' DRIFT' if r['drift_detected'] else ''}"
                        for n, r in result["pairs"].items())
    verdict = "ALIGNMENT DRIFT" if result["drift_detected"] else "no alignment drift"
    print(f"{verdict} ({result['decision_rule']}); {summary}; wrote {args.output}")
    return 1 if (args.fail_on_drift and result["drift_detected"]) else 0
