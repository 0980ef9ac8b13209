"""Validation + versioning throughput (records/s) at growing sizes, and DVC add/push of shards vs loose files.

    .venv/bin/python bench/bench_data.py --sizes 1000,10000,100000 --work /tmp/mmcl-bench-data \\
        --modes 1000=full,header,exists 10000=full,header 100000=header --loose-size 10000

Data: the 1000 real Flickr8k triples, replicated. Replica r > 0 of a triple gets its own files whose
bytes differ (JPEG + trailing text after the EOI marker; MP3 + an ID3v1 tag naming the replica) and a
caption suffixed "(replica r)", so no content hash, id or normalised caption repeats: DVC cannot
deduplicate and the near-duplicate check does not fire on every row. Every record has caption, 5
captions, image and audio (~55 kB of media).

Per size it times (GX imported beforehand, its import time reported apart):
  validate   run_gate(): manifest parse, computed columns (sha256 of every file + the media check of the
             mode), both GX suites, routing accepted rows (hard links) -> records/s per media-check mode
  version    build_dataset() (tar shards of 256) + `dvc add` + `dvc push` to a local-directory remote,
             each phase timed, in a fresh git + DVC repository
and once, at --loose-size: `dvc add` + `dvc push` of the same bytes as loose files (each shard member a
file) in another fresh repository. Writes a JSON of every figure next to the work folder and prints a
Markdown table. The machine is shared: wall-clock figures include other tenants' load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mmcl.data.flickr import load_flickr_triples
from mmcl.data.manifest import sha256_file, write_jsonl
from mmcl.data.shards import build_dataset, iter_samples
from mmcl.data.versioning import DvcRepo
from mmcl.validate.gate import Areas, run_gate
from mmcl.validate.runner import gx_runner


def id3v1(text: str) -> bytes:
    """A 128-byte ID3v1 tag: decoders skip it, so the audio is unchanged but the bytes are unique."""
    title = text.encode("ascii")[:30].ljust(30, b"\0")
    return b"TAG" + title + b"\0" * 60 + b"2026" + b"\0" * 30 + b"\xff"


def make_replicated_drop(folder: Path, size: int) -> Path:
    """A drop of `size` records replicating the 1000 triples with unique bytes per replica."""
    triples = load_flickr_triples()
    drop = folder / "drop-bench"
    (drop / "images").mkdir(parents=True)
    (drop / "audio").mkdir()
    records = []
    for k in range(size):
        t, replica = triples[k % len(triples)], k // len(triples)
        rid = f"{t.image_id}-r{replica:03d}"
        suffix = f" (replica {replica})" if replica else ""
        image = t.image_path.read_bytes() + (f"replica {replica}".encode() if replica else b"")
        (drop / "images" / f"{rid}.jpg").write_bytes(image)
        record = {"id": rid, "group": t.image_id, "split": t.split, "caption": t.captions[0] + suffix,
                  "captions": [c + suffix for c in t.captions], "image": f"images/{rid}.jpg",
                  "image_sha256": sha256_file(drop / "images" / f"{rid}.jpg")}
        if t.audio_path is not None:
            audio = t.audio_path.read_bytes() + (id3v1(f"replica {replica}") if replica else b"")
            (drop / "audio" / f"{rid}.mp3").write_bytes(audio)
            record.update(audio=f"audio/{rid}.mp3", transcript=t.transcript,
                          audio_sha256=sha256_file(drop / "audio" / f"{rid}.mp3"))
        records.append(record)
    write_jsonl(drop / "manifest.jsonl", records)
    return drop


def fresh_repo(folder: Path) -> DvcRepo:
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    repo = DvcRepo(folder)
    repo.init()  # local default remote .dvc/local-remote
    return repo


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def bench_size(work: Path, size: int, modes: list[str]) -> dict:
    folder = work / f"n{size}"
    shutil.rmtree(folder, ignore_errors=True)
    setup_s, drop = timed(make_replicated_drop, folder / "landing", size)
    mib = sum(p.stat().st_size for p in drop.rglob("*") if p.is_file()) / 2**20
    out: dict = {"records": size, "drop_mib": round(mib, 1), "setup_s": round(setup_s, 1), "validate": {}}
    areas = None
    for mode in modes:
        areas = Areas.under(folder / f"areas-{mode}")
        seconds, (report,) = timed(run_gate, [drop], areas=areas, media_check=mode)
        assert report.status == "passed" and report.accepted == size, report.describe()[:2000]
        out["validate"][mode] = {"seconds": round(seconds, 2), "records_per_s": round(size / seconds, 1)}
        print(f"  n={size} validate[{mode}]: {seconds:.1f} s ({size / seconds:.0f} records/s)", flush=True)
    repo = fresh_repo(folder / "repo")
    dataset = repo.root / "data" / "dataset"
    shards_s, info = timed(build_dataset, areas.accepted, dataset)
    add_s, _ = timed(repo.add, dataset)
    push_s, _ = timed(repo.push, dataset.with_name("dataset.dvc"))
    total = shards_s + add_s + push_s
    out["version"] = {"shards": info["shards"], "shard_s": round(shards_s, 2), "dvc_add_s": round(add_s, 2),
                      "dvc_push_s": round(push_s, 2), "records_per_s": round(size / total, 1),
                      "dataset_mib": round(sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file()) / 2**20, 1)}
    print(f"  n={size} version: {out['version']}", flush=True)
    return out


def bench_loose(work: Path, size: int) -> dict:
    """dvc add + push of the n=size dataset as loose files (one file per shard member)."""
    dataset = work / f"n{size}" / "repo" / "data" / "dataset"
    repo = fresh_repo(work / f"loose{size}")
    loose = repo.root / "data" / "loose"
    loose.mkdir(parents=True)
    files = 0
    for sample in iter_samples(dataset):
        for ext, value in sample.items():
            if ext == "__key__":
                continue
            data = json.dumps(value, sort_keys=True).encode() if ext == "json" else \
                value.encode() if isinstance(value, str) else value
            (loose / f"{sample['__key__']}.{ext}").write_bytes(data)
            files += 1
    add_s, _ = timed(repo.add, loose)
    push_s, _ = timed(repo.push, loose.with_name("loose.dvc"))
    result = {"records": size, "files": files, "dvc_add_s": round(add_s, 2), "dvc_push_s": round(push_s, 2)}
    print(f"  loose n={size}: {result}", flush=True)
    return result


def parse_modes(specs: list[str], sizes: list[int]) -> dict[int, list[str]]:
    modes = {size: ["header"] for size in sizes}
    for spec in specs:
        size, _, names = spec.partition("=")
        modes[int(size)] = names.split(",")
    return modes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--modes", nargs="*", default=["1000=full,header,exists", "10000=full,header"],
                        help="SIZE=mode,mode ... (media-check modes; default header)")
    parser.add_argument("--loose-size", type=int, default=10000, help="size for shards-vs-loose (0: skip)")
    parser.add_argument("--work", default="/tmp/mmcl-bench-data", help="scratch folder (deleted first)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder (~4 copies of the media per size: ~22 GB at 100k)")
    args = parser.parse_args()
    os.environ["DVC_NO_ANALYTICS"] = "1"
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = parse_modes(args.modes, sizes)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    import_s, _ = timed(gx_runner)
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
               "cpus": os.cpu_count(), "gx_import_and_context_s": round(import_s, 2), "sizes": {}}
    print(f"GX import + ephemeral context: {import_s:.1f} s", flush=True)
    for size in sizes:
        results["sizes"][size] = bench_size(work, size, modes[size])
    if args.loose_size:
        results["loose"] = bench_loose(work, args.loose_size)
    (work.parent / f"{work.name}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
