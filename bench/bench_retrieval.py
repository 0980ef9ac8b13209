"""Issue #16 benchmarks: the queue objective against in-batch CLIP under corrupted queries, the speech and
missing-modality curves, and the index's build time, memory and query latency (index and HTTP endpoint).

    .venv/bin/python bench/bench_retrieval.py objectives --seeds 0 1 2 --batch-sizes 8 32 --epochs 3 \
        --runs-dir /tmp/r16/runs --output bench/results/retrieval_objectives.json --figure bench/figures/robustness_queue_vs_clip.png
    .venv/bin/python bench/bench_retrieval.py speech --epochs 3 --runs-dir /tmp/r16/runs \
        --output bench/results/retrieval_speech.json --figure bench/figures/robustness_trimodal.png
    .venv/bin/python bench/bench_retrieval.py latency --model /tmp/r16/runs/<run> --queries 200 \
        --faiss-path /tmp/faiss_t --output bench/results/retrieval_latency.json

objectives / speech train configs/demo.yaml with the text tower frozen too (pretrained MiniLM and EfficientNet
towers, cached features: only the heads, and in `speech` the speech encoder, train), so a run takes well under
3 minutes on 2 cores; both objectives get the same epochs, batch size, learning rates and seeds. Results are
written after every run. `--faiss-path` points at a folder where faiss-cpu was unpacked for this comparison
(`pip install --no-deps --target DIR faiss-cpu`): it is not a project dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

IMAGE_TEXT = ["image_blur", "image_noise", "image_jpeg", "caption_word_drop", "caption_typos"]
SPEECH = ["speech_noise", "speech_speed", "missing_text", "missing_audio"]
METHODS = {
    "in-batch CLIP": ("clip", {}),
    "queue K=1024": ("queue", {"modalities": ["image", "text"], "queue_size": 1024, "momentum": 0.995}),
}


def _write(path: str, value: dict) -> None:
    from mmcl.data.manifest import write_json

    write_json(path, value)


def _train(overrides: list[str]) -> dict:
    from mmcl.config import load_config
    from mmcl.train.run import train

    common = ["model.encoders.text.freeze=true", "train.progress_bar=false", "train.checkpoint_every_n_steps=100000"]
    return train(load_config("configs/demo.yaml", [*common, *overrides]))


def _mean_result(results: list[dict]) -> dict:
    """Curves averaged over seeds (R@5 and the bootstrap bounds), for the figure."""
    out = {"curves": {}}
    for name, first in results[0]["curves"].items():
        points = []
        for i, p in enumerate(first["points"]):
            vals = {k: statistics.mean(r["curves"][name]["points"][i][k] for r in results) for k in ("R@5", "ci_low", "ci_high")}
            points.append({**p, **vals})
        out["curves"][name] = {**first, "points": points}
    return out


def run_objectives(args: argparse.Namespace) -> None:
    from mmcl.eval.robustness import RobustnessEvaluator, plot_curves
    from mmcl.train.checkpoint import load_model

    evaluator = RobustnessEvaluator("test", corruptions=IMAGE_TEXT, n_boot=args.bootstrap)
    done = json.loads(Path(args.output).read_text()) if Path(args.output).is_file() else {"runs": []}
    for batch in args.batch_sizes:
        for seed in args.seeds:
            for method, (objective, options) in METHODS.items():
                if any(r["method"] == method and r["seed"] == seed and r["batch_size"] == batch for r in done["runs"]):
                    continue
                t0 = time.perf_counter()
                metrics = _train([f"name=r16-{objective}-b{batch}", f"seed={seed}", f"runs_dir={args.runs_dir}",
                                  "data.modalities=[text,image]", f"objective.name={objective}",
                                  f"objective.options={json.dumps(options)}", f"train.max_epochs={args.epochs}",
                                  f"data.batch_size={batch}"])
                train_s = time.perf_counter() - t0
                model, config = load_model(metrics["run_dir"])
                result = evaluator(model, config)
                done["runs"].append({"method": method, "seed": seed, "batch_size": batch, "run_dir": metrics["run_dir"],
                                     "global_step": metrics["global_step"], "fit_seconds": metrics["fit_seconds"],
                                     "train_wall_seconds": round(train_s, 1), "test_retrieval": metrics["test_retrieval"],
                                     "robustness": result, "load_avg": os.getloadavg()[0]})
                _write(args.output, done)
                print(f"{method} b{batch} seed {seed}: {metrics['global_step']} steps, fit {metrics['fit_seconds']:.0f} s, "
                      f"clean R@5 t2i {result['curves']['caption_typos']['points'][0]['R@5']:.1f}", flush=True)
    by = {}
    for r in done["runs"]:
        by.setdefault((r["batch_size"], r["method"]), []).append(r["robustness"])
    smallest = min(args.batch_sizes)
    plot_curves({m: _mean_result(by[(smallest, m)]) for m in METHODS if (smallest, m) in by}, args.figure,
                title=f"queue vs in-batch CLIP, batch {smallest}, mean of {len(args.seeds)} seeds (bands: mean bootstrap 95% CI)")
    print(objectives_table(done))


def objectives_table(done: dict) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.mean(values):.1f} ± {statistics.pstdev(values):.1f}"

    lines = ["| batch | objective | steps | text→image R@5 | image→text R@5 | caption corruptions: mean R@5 | "
             "image corruptions: mean R@5 | fit s |", "|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in done["runs"]:
        groups.setdefault((r["batch_size"], r["method"]), []).append(r)
    for (batch, method), runs in sorted(groups.items()):
        def corrupted(r, names):  # mean R@5 over the corrupted (non-clean) levels of these curves
            return statistics.mean(p["R@5"] for n in names for p in r["robustness"]["curves"][n]["points"][1:])

        lines.append(f"| {batch} | {method} ({len(runs)} seeds) | {runs[0]['global_step']} | "
                     f"{cell([r['robustness']['curves']['caption_typos']['points'][0]['R@5'] for r in runs])} | "
                     f"{cell([r['robustness']['curves']['image_blur']['points'][0]['R@5'] for r in runs])} | "
                     f"{cell([corrupted(r, ['caption_word_drop', 'caption_typos']) for r in runs])} | "
                     f"{cell([corrupted(r, ['image_blur', 'image_noise', 'image_jpeg']) for r in runs])} | "
                     f"{cell([r['fit_seconds'] for r in runs])} |")
    return "\n".join(lines)


def run_speech(args: argparse.Namespace) -> None:
    from mmcl.eval.robustness import RobustnessEvaluator, markdown_table, plot_curves
    from mmcl.train.checkpoint import load_model

    t0 = time.perf_counter()
    metrics = _train(["name=r16-trimodal", f"seed={args.seeds[0]}", f"runs_dir={args.runs_dir}",
                      f"train.max_epochs={args.epochs}", f"data.batch_size={args.batch_sizes[0]}", *args.set])
    train_s = time.perf_counter() - t0
    model, config = load_model(metrics["run_dir"])
    # the image and caption curves are the objectives run's (the same frozen towers); here speech and fusion
    result = RobustnessEvaluator("test", corruptions=SPEECH, n_boot=args.bootstrap)(model, config)
    _write(args.output, {"run_dir": metrics["run_dir"], "global_step": metrics["global_step"],
                         "fit_seconds": metrics["fit_seconds"], "train_wall_seconds": round(train_s, 1),
                         "test_retrieval": metrics["test_retrieval"], "robustness": result,
                         "load_avg": os.getloadavg()[0]})
    plot_curves({"tri-modal CLIP": result}, args.figure, title=f"{Path(metrics['run_dir']).name}: R@5 under "
                "corrupted queries, Flickr8k test (125 images), 95% bootstrap CI")
    print(markdown_table(result))


def _pct(values: list[float]) -> dict:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]  # noqa: E731
    return {"p50_ms": round(1000 * pick(0.5), 3), "p95_ms": round(1000 * pick(0.95), 3), "n": len(values)}


def _timed(into: list[float], fn, *args):
    """fn(*args), its wall time appended to `into`."""
    t = time.perf_counter()
    value = fn(*args)
    into.append(time.perf_counter() - t)
    return value


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url) as response:
        return response.read()


def _faiss_flat(faiss, vectors):
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def run_latency(args: argparse.Namespace) -> None:
    import urllib.parse

    import numpy as np

    from mmcl.data.flickr import load_flickr_triples
    from mmcl.data.paths import data_dir
    from mmcl.eval.embedders import configure_threads
    from mmcl.index.search import ChampionSearcher
    from mmcl.index.serve import serve_in_thread
    from mmcl.index.store import Index, build_index
    from mmcl.registry_models import ModelRegistry

    if args.faiss_path:
        sys.path.insert(0, args.faiss_path)
    import faiss

    threads = configure_threads(args.threads)
    faiss.omp_set_num_threads(threads)
    work = Path(args.work)
    registry = ModelRegistry(work / "models")
    model_id = Path(args.model).name
    registry.register(model_id, args.model)
    registry.promote(model_id, force=True, by="bench_retrieval", reason="the model whose index is measured")
    entry = registry.entry(model_id)
    rss0 = _rss_mib()
    meta = build_index(model_id, entry["model_file"], data_dir(args.data_dir), "bench-full-dataset", work / "indexes")
    index = Index.load(meta["folder"])
    rss_built = _rss_mib()
    out: dict = {"machine": f"{os.cpu_count()} cores, load avg at start {os.getloadavg()[0]:.1f}", "threads": threads,
                 "build_seconds": meta["build_seconds"], "counts": meta["counts"], "dim": meta["dim"],
                 "index_bytes": index.nbytes, "rss_mib": {"before_build": round(rss0, 1), "after_build": round(rss_built, 1)}}

    # queries: the second caption of evenly spaced images of the dataset
    records = load_flickr_triples(args.data_dir)
    texts = [r.captions[1] for r in records][:: max(1, len(records) // args.queries)][: args.queries]
    searcher = ChampionSearcher(registry.root, work / "indexes")
    _, encoder, _ = searcher.current()
    server, url = serve_in_thread(searcher)
    flat = {m: faiss.IndexFlatIP(e.shape[1]) for m, e in index.embeddings.items()}
    for m, e in index.embeddings.items():
        flat[m].add(e)
    times: dict[str, list[float]] = {k: [] for k in ("numpy_search", "faiss_search", "encode_text",
                                                     "searcher_end_to_end", "http_end_to_end")}
    agree = 0
    for text in texts:  # interleaved: every method sees the same query under the same load
        q = encoder.encode("text", text)
        hits = _timed(times["numpy_search"], index.search, q, args.k)
        faiss_rows = _timed(times["faiss_search"], lambda q=q: {m: flat[m].search(q[None, :], args.k)[1][0] for m in flat})
        agree += all([h["row"] for h in hits[m]] == list(faiss_rows[m]) for m in flat)
        _timed(times["encode_text"], encoder.encode, "text", text)
        _timed(times["searcher_end_to_end"], searcher.search, "text", text, args.k)
        query_url = f"{url}/api/search?" + urllib.parse.urlencode({"text": text, "k": args.k})
        _timed(times["http_end_to_end"], _get, query_url)
    server.shutdown()
    out["latency"] = {k: _pct(v) for k, v in times.items()}
    out["top_k_identical_numpy_vs_faiss"] = f"{agree}/{len(texts)}"
    out["rss_mib"]["after_queries"] = round(_rss_mib(), 1)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    # scale: exact search on synthetic unit vectors, numpy vs FAISS IndexFlatIP, interleaved, repeated
    rng = np.random.default_rng(0)
    scale = {}
    for n in args.scale_sizes:
        gallery = rng.standard_normal((n, meta["dim"]), dtype=np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        queries = gallery[rng.integers(0, n, 50)] + 0.01
        row: dict[str, list[float]] = {"numpy_build": [], "faiss_build": [], "numpy_query": [], "faiss_query": []}
        for _ in range(args.repeats):
            g = _timed(row["numpy_build"], np.ascontiguousarray, gallery)
            fi = _timed(row["faiss_build"], _faiss_flat, faiss, gallery)
            for q in queries:
                _timed(row["numpy_query"], lambda q=q, g=g: np.argpartition(-(g @ q), args.k)[: args.k])
                _timed(row["faiss_query"], fi.search, q[None, :], args.k)
        scale[str(n)] = {"build_s_median": {k: round(statistics.median(row[k]), 4) for k in ("numpy_build", "faiss_build")},
                         "query": {k: _pct(row[k]) for k in ("numpy_query", "faiss_query")}}
    out["scale"] = scale
    out["load_avg_end"] = os.getloadavg()[0]
    _write(args.output, out)
    print(json.dumps(out, indent=2))


def run_search(args: argparse.Namespace) -> None:
    """Search only, on a built index (no model): its own rows as queries; numpy with the BLAS default threads,
    numpy with 1 BLAS thread, FAISS IndexFlatIP with 1 thread, interleaved, `repeats` passes."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from mmcl.index.store import Index

    if args.faiss_path:
        sys.path.insert(0, args.faiss_path)
    import faiss

    faiss.omp_set_num_threads(1)
    index = Index.load(args.index)
    flat = {m: _faiss_flat(faiss, e) for m, e in index.embeddings.items()}
    queries = index.embeddings["text"][:: max(1, len(index.embeddings["text"]) // args.queries)][: args.queries]
    times: dict[str, list[float]] = {"numpy_blas_default": [], "numpy_blas_1_thread": [], "faiss_1_thread": []}
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]
    for _ in range(args.repeats):
        for q in queries:
            _timed(times["numpy_blas_default"], index.search, q, args.k)
            with threadpool_limits(1):
                _timed(times["numpy_blas_1_thread"], index.search, q, args.k)
            _timed(times["faiss_1_thread"], lambda q=q: {m: f.search(q[None, :], args.k) for m, f in flat.items()})
    out = {"index": str(args.index), "counts": index.meta["counts"], "blas": blas, "load_avg": os.getloadavg()[0],
           "search_all_galleries": {k: _pct(v) for k, v in times.items()}}
    _write(args.output, out)
    print(json.dumps(out, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("objectives", "speech", "latency", "search"))
    parser.add_argument("--index", help="search: a built index folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--runs-dir", default="/tmp/r16/runs")
    parser.add_argument("--output", required=True)
    parser.add_argument("--figure", default=None)
    parser.add_argument("--model", help="latency: a trained run dir (model.pt)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--work", default="/tmp/r16/latency", help="latency: registry + index folder")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--faiss-path", default=None)
    parser.add_argument("--set", action="append", default=[], help="speech: extra config override KEY=VALUE")
    parser.add_argument("--scale-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tasks = {"objectives": run_objectives, "speech": run_speech, "latency": run_latency, "search": run_search}
    tasks[args.task](args)


if __name__ == "__main__":
    main()
