"""`mmcl index build`, `mmcl search`, `mmcl serve` (argparse only here; torch loads inside the commands).

    python -m mmcl index build --store models --root indexes --data-dir ../shared/data --dataset-md5 <md5>
    python -m mmcl search --text "a dog runs on the beach" --k 10 [--in image]
    python -m mmcl search --image photo.jpg        python -m mmcl search --audio clip.mp3 --json
    python -m mmcl serve --port 8765               (127.0.0.1 only)

--store: the model registry (default $MMCL_MODEL_STORE or ./models); --root: the indexes (default
$MMCL_INDEX_DIR or ./indexes). Search and serve follow the registry's champion.
"""

from __future__ import annotations

import argparse
import json


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=None, help="model registry folder (default $MMCL_MODEL_STORE or ./models)")
    p.add_argument("--root", default=None, help="index folder (default $MMCL_INDEX_DIR or ./indexes)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build the search index of a registered model over a dataset version")
    actions = p.add_subparsers(dest="index_action", required=True)
    b = actions.add_parser("build", help="embed every image, clip and caption of a dataset with a model")
    _where(b)
    b.add_argument("--model", default=None, help="registered model id (default: the champion)")
    b.add_argument("--data-dir", default=None, help="dataset root (default $MMCL_DATA_DIR or ../shared/data)")
    b.add_argument("--dataset-md5", required=True, help="the dataset version's DVC md5 (names the index)")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--threads", type=int, default=None)
    b.set_defaults(func=run_build)

    p = sub.add_parser("search", help="search the champion's index with a text, an image or a speech clip")
    _where(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text")
    q.add_argument("--image", help="image file")
    q.add_argument("--audio", help="audio file (mp3, wav, flac)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--in", dest="galleries", nargs="+", choices=("image", "audio", "text"), default=None,
                   help="gallery modalities (default: all in the index)")
    p.add_argument("--dataset-md5", default=None, help="expected dataset version (default: the index's current)")
    p.add_argument("--json", action="store_true", help="print the JSON reply instead of a table")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run_search)

    p = sub.add_parser("serve", help="HTTP API + HTML page over the champion's index on 127.0.0.1")
    _where(p)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--dataset-md5", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run_serve)


def run_build(args: argparse.Namespace) -> int:
    from mmcl.data.paths import data_dir
    from mmcl.errors import UserError
    from mmcl.eval.embedders import configure_threads
    from mmcl.index.store import build_index
    from mmcl.registry_models import ModelRegistry

    configure_threads(args.threads)
    registry = ModelRegistry(args.store)
    entry = registry.entry(args.model) if args.model else registry.champion()
    if entry is None:
        raise UserError(f"the registry {registry.file} has no champion: pass --model <id>")
    meta = build_index(entry["id"], entry["model_file"], data_dir(args.data_dir), args.dataset_md5, args.root,
                       batch_size=args.batch_size)
    print(json.dumps({k: meta[k] for k in ("model_id", "dataset_md5", "counts", "build_seconds", "folder", "reused")}))
    return 0


def run_search(args: argparse.Namespace) -> int:
    from mmcl.eval.embedders import configure_threads
    from mmcl.index.search import ChampionSearcher

    configure_threads(args.threads)
    modality, value = next((m, v) for m, v in (("text", args.text), ("image", args.image), ("audio", args.audio))
                           if v is not None)
    reply = ChampionSearcher(args.store, args.root, args.dataset_md5).search(modality, value, args.k, args.galleries)
    if args.json:
        print(json.dumps(reply, indent=2))
        return 0
    print(f"champion {reply['champion']}, dataset {reply['dataset_md5']}, {modality} query")
    for gallery, hits in reply["results"].items():
        print(f"\n{gallery}:")
        for h in hits:
            shown = h["text"] if gallery == "text" else h["path"]
            print(f"  {h['rank']:>3}  {h['score']:.4f}  {h['image_id']}  {shown}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from mmcl.eval.embedders import configure_threads
    from mmcl.index.search import ChampionSearcher
    from mmcl.index.serve import make_server

    configure_threads(args.threads)
    server = make_server(ChampionSearcher(args.store, args.root, args.dataset_md5), "127.0.0.1", args.port)
    print(f"serving the champion's index on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
