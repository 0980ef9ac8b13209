"""`mmcl eval {sts,senteval,retrieval,geometry,robustness}` and `mmcl export`.

    python -m mmcl eval sts --model all-minilm-l6-v2 --output reports/sts.json          # + .md, .png
    python -m mmcl eval sts --model runs/demo-1a2b3c --sets stsb sickr --max-pairs 200 --output /tmp/s.json
    python -m mmcl eval senteval --model all-minilm-l6-v2 --tasks MR TREC --max-samples 500 --output t.json
    python -m mmcl eval retrieval --model runs/demo-1a2b3c --pair text:image --split test --output r.json
    python -m mmcl eval geometry --model all-minilm-l6-v2 --output g.json
    python -m mmcl eval robustness --model runs/demo-1a2b3c --output robust.json          # + .md, .png
    python -m mmcl export --checkpoint runs/demo-1a2b3c --format sentence-transformers --output exported/demo

Only argparse is imported at module level; torch & co. load inside the commands.
"""

from __future__ import annotations

import argparse
import json

STS_SET_NAMES = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
TRANSFER_NAMES = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
POOLINGS = ("cls", "cls_before_pooler", "mean", "first_last_avg")


def _threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        default=None,  # checked by mmcl.eval.embedders.default_threads, the owner of the rule
        help="torch threads: N, or 'polite' = the cores not busy right now (default: every core)",
    )


def _text_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="mmcl run dir or checkpoint, sentence-transformers / Hugging Face folder, or a packaged "
        "short name (all-minilm-l6-v2)",
    )
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help="pooling of the bare backbone (default: the model's own; 'mean' for a plain HF folder)",
    )
    p.add_argument(
        "--no-head",
        action="store_true",
        help="mmcl checkpoints: use the text encoder output without the projection head (SimCSE style)",
    )
    p.add_argument("--max-length", type=int, default=None, help="token limit (default: the backbone's, 512)")
    p.add_argument("--batch-size", type=int, default=64)
    _threads_arg(p)
    p.add_argument("--data-dir", default=None, help="data root (default: $MMCL_DATA_DIR or ../shared/data)")
    p.add_argument("--output", required=True, help="JSON path; .md and .png are written beside it")
    p.add_argument("--label", default=None, help="model name in the report tables")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a model: STS, SentEval transfer, retrieval, geometry")
    tasks = ev.add_subparsers(dest="eval_task", required=True)

    p = tasks.add_parser("sts", help="STS12-16, STS-B, SICK-R: Spearman x100 of cosine similarity")
    _text_model_args(p)
    p.add_argument("--sets", nargs="+", choices=STS_SET_NAMES, default=list(STS_SET_NAMES))
    p.add_argument("--split", choices=("test", "dev", "train"), default="test", help="STS-B / SICK-R split")
    p.add_argument("--max-pairs", type=int, default=None, help="first N pairs of each subset (quick runs)")
    p.set_defaults(func=run_sts)

    p = tasks.add_parser("senteval", help="MR CR SUBJ MPQA SST2 TREC MRPC: logistic regression accuracy")
    _text_model_args(p)
    p.add_argument("--tasks", nargs="+", choices=TRANSFER_NAMES, default=list(TRANSFER_NAMES))
    p.add_argument(
        "--max-samples", type=int, default=None, help="seeded random N examples per split (quick runs)"
    )
    p.add_argument("--folds", type=int, default=10)
    p.set_defaults(func=run_senteval)

    p = tasks.add_parser("geometry", help="alignment and uniformity on STS-B (Wang & Isola; SimCSE protocol)")
    _text_model_args(p)
    p.add_argument("--split", choices=("test", "dev", "train"), default="test")
    p.add_argument("--max-pairs", type=int, default=None, help="first N STS-B pairs (quick runs)")
    p.set_defaults(func=run_geometry)

    p = tasks.add_parser("retrieval", help="Flickr8k retrieval between two modalities of an mmcl model")
    p.add_argument("--model", required=True, help="mmcl run dir or checkpoint")
    p.add_argument("--pair", default="text:image", help="two modalities, e.g. text:image, audio:image")
    p.add_argument("--split", default="test", choices=("test", "dev", "train", "none"))
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    _threads_arg(p)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--output", required=True)
    p.add_argument("--label", default=None)
    p.set_defaults(func=run_retrieval)

    p = tasks.add_parser("robustness", help="R@5 under corrupted queries and missing modalities (mmcl.eval.robustness)")
    p.add_argument("--model", required=True, help="mmcl run dir or checkpoint")
    p.add_argument("--corruptions", nargs="+", default=None, help="default: every one the model's towers allow")
    p.add_argument("--split", default="test", choices=("test", "dev", "train", "none"))
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the queries")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions and the bootstrap")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--output", required=True, help="JSON path; .md and .png are written beside it")
    p.add_argument("--label", default=None)
    p.set_defaults(func=run_robustness)

    p = sub.add_parser("export", help="export a trained model (sentence-transformers, open_clip)")
    p.add_argument("--checkpoint", required=True, help="mmcl run dir, model.pt or .ckpt")
    p.add_argument("--format", required=True, choices=("sentence-transformers", "open_clip"))
    p.add_argument("--output", required=True, help="folder to write")
    p.add_argument(
        "--no-head", action="store_true", help="sentence-transformers: export the encoder without the head"
    )
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_export)


def _embedder(args: argparse.Namespace):
    from mmcl.eval.embedders import configure_threads, load_text_embedder

    configure_threads(args.threads)
    return load_text_embedder(
        args.model,
        args.pooling,
        use_head=not args.no_head,
        max_length=args.max_length,
        batch_size=args.batch_size,
        show_progress=not args.quiet,
    )


def _finish(result: dict, args: argparse.Namespace, kind: str, headline: list[str]) -> int:
    from mmcl.eval.report import write_report

    paths = write_report(result, args.output, kind, label=args.label)
    print(
        json.dumps(
            {
                **{k: round(result[k], 2) for k in headline if k in result},
                "files": [str(p) for p in paths.values()],
            }
        )
    )
    return 0


def run_sts(args: argparse.Namespace) -> int:
    from mmcl.eval.sts import StsEvaluator

    evaluator = StsEvaluator(
        args.sets, args.data_dir, args.split, args.max_pairs
    )  # data errors before model load
    result = evaluator(_embedder(args))
    return _finish(result, args, "sts", [*args.sets, "avg"])


def run_senteval(args: argparse.Namespace) -> int:
    from mmcl.eval.senteval import TransferEvaluator

    evaluator = TransferEvaluator(args.tasks, args.data_dir, args.max_samples, folds=args.folds)
    result = evaluator(_embedder(args))
    return _finish(result, args, "senteval", [*args.tasks, "avg"])


def run_geometry(args: argparse.Namespace) -> int:
    from mmcl.eval.geometry import GeometryEvaluator

    result = GeometryEvaluator(args.data_dir, args.split, max_pairs=args.max_pairs)(_embedder(args))
    return _finish(result, args, "geometry", ["alignment", "uniformity"])


def run_retrieval(args: argparse.Namespace) -> int:
    from mmcl.errors import UserError
    from mmcl.eval.embedders import configure_threads
    from mmcl.eval.retrieval import RetrievalEvaluator
    from mmcl.train.checkpoint import load_model

    pair = tuple(args.pair.split(":"))
    if len(pair) != 2 or pair[0] == pair[1]:
        raise UserError(f"--pair {args.pair!r}: expected two different modalities like text:image")
    configure_threads(args.threads)
    evaluator = RetrievalEvaluator(pair, args.split, args.data_dir, args.max_images, args.batch_size)
    model, config = load_model(args.model)
    missing = [m for m in pair if m not in model.encoders]
    if missing:
        raise UserError(
            f"--pair {args.pair}: the model has no {', '.join(missing)} tower (it has {', '.join(model.encoders)})"
        )
    result = evaluator(model, config)
    result["details"]["model"] = {"kind": "mmcl-checkpoint", "name": args.model}
    a, b = pair
    return _finish(result, args, "retrieval", [f"{a}2{b}/R@1", f"{b}2{a}/R@1", "rsum"])


def run_robustness(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmcl.data.manifest import atomic_write_text, write_json
    from mmcl.eval.embedders import configure_threads
    from mmcl.eval.robustness import RobustnessEvaluator, markdown_table, plot_curves
    from mmcl.train.checkpoint import load_model

    configure_threads(args.threads)
    evaluator = RobustnessEvaluator(args.split, args.data_dir, args.max_images, args.corruptions, args.bootstrap,
                                    args.seed)  # data errors before the model loads
    model, config = load_model(args.model)
    result = evaluator(model, config)
    result["details"]["model"] = args.label or args.model
    out = Path(args.output)
    write_json(out, result)
    atomic_write_text(out.with_suffix(".md"), markdown_table(result) + "\n")
    plot_curves({args.label or Path(args.model).name: result}, out.with_suffix(".png"), title=str(args.model))
    print(json.dumps({"clean R@5": {n: round(c["points"][0]["R@5"], 1) for n, c in result["curves"].items()},
                      "files": [str(out), str(out.with_suffix(".md")), str(out.with_suffix(".png"))]}))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from mmcl.eval.export import export_open_clip, export_sentence_transformers

    if args.format == "sentence-transformers":
        summary = export_sentence_transformers(
            args.checkpoint,
            args.output,
            use_head=not args.no_head,
            max_seq_length=args.max_seq_length,
            overwrite=args.overwrite,
        )
    else:
        summary = export_open_clip(args.checkpoint, args.output, overwrite=args.overwrite)
    print(json.dumps(summary))
    return 0
