"""Build, store and open the index of a model over a dataset version; refuse an index that does not match.

Layout (one folder per (model, dataset version), so a rollback finds the old champion's index intact):

    <root>/<model id>/<dataset md5>/meta.json       model id, sha256 of its model file, dataset md5, counts, ...
    <root>/<model id>/<dataset md5>/<modality>.npy   unit-norm float32 [N, D] embeddings, rows = items
    <root>/<model id>/<dataset md5>/items.json       {modality: [{"image_id", "path", "text"}]} in row order
    <root>/CURRENT_DATASET                           md5 of the dataset version the index should cover

Items: one per image (image), one per clip (audio: speech of the first caption), one per caption (text).
A folder is written under a unique temp name and renamed into place, so a reader never sees half an index.

Refusals (StaleIndex, a UserError): no champion; no index for the champion; an index built on another dataset
version than the current one; a model file whose sha256 differs from the one the index was built with.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mmcl.errors import UserError

INDEX_FORMAT = "mmcl-index-v1"
MODALITIES = ("image", "audio", "text")
ENV_INDEX_ROOT = "MMCL_INDEX_DIR"
DEFAULT_ROOT = "indexes"
CURRENT_FILE = "CURRENT_DATASET"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # model ids and DVC md5s ("<hex>.dir")


class StaleIndex(UserError):
    """The index cannot answer for the current champion and dataset version (the message says why and how)."""


def index_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get(ENV_INDEX_ROOT) or DEFAULT_ROOT)


def _safe(name: str, what: str) -> str:
    if not _SAFE_NAME.match(name or "") or ".." in name:
        raise UserError(f"{what} {name!r} cannot name an index folder (letters, digits, . _ - only)")
    return name


def index_dir(root: str | os.PathLike, model_id: str, dataset_md5: str) -> Path:
    return Path(root) / _safe(model_id, "model id") / _safe(dataset_md5, "dataset md5")


def _sha256(path: str | os.PathLike) -> str:
    from mmcl.data.manifest import sha256_file

    return sha256_file(path)


def current_dataset(root: str | os.PathLike) -> str | None:
    """The dataset md5 the index should cover (set by the last build), None before any build."""
    file = Path(root) / CURRENT_FILE
    return file.read_text(encoding="utf-8").strip() or None if file.is_file() else None


def set_current_dataset(root: str | os.PathLike, dataset_md5: str) -> None:
    from mmcl.data.manifest import atomic_write_text

    atomic_write_text(Path(root) / CURRENT_FILE, _safe(dataset_md5, "dataset md5") + "\n")


def _items(records: list[Any], modality: str) -> list[dict[str, Any]]:
    """Items in mmcl.train.evaluate.embed_records' row order (captions of each image; clips where present)."""
    if modality == "text":
        return [{"image_id": r.image_id, "path": str(r.image_path), "text": c} for r in records for c in r.captions]
    if modality == "audio":
        return [{"image_id": r.image_id, "path": str(r.audio_path), "text": r.transcript}
                for r in records if r.audio_path is not None]
    return [{"image_id": r.image_id, "path": str(r.image_path), "text": r.captions[0]} for r in records]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())


def build_index(model_id: str, model_file: str | os.PathLike, data_dir: str | os.PathLike, dataset_md5: str,
                root: str | os.PathLike | None = None, *, batch_size: int = 64, make_current: bool = True,
                progress: bool = False) -> dict[str, Any]:
    """Embed every item of the dataset at `data_dir` with the model; returns the index's meta.

    Idempotent: an existing index of the same model file and dataset is reused (meta["reused"] is True).
    """
    from mmcl.data.flickr import load_flickr_triples
    from mmcl.train.checkpoint import load_model
    from mmcl.train.evaluate import embed_records

    root = index_root(root)
    folder = index_dir(root, model_id, dataset_md5)
    digest = _sha256(model_file)
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") == INDEX_FORMAT and meta.get("model_sha256") == digest:
            if make_current:
                set_current_dataset(root, dataset_md5)
            return {**meta, "folder": str(folder), "reused": True}
    start = time.perf_counter()
    records = load_flickr_triples(data_dir)
    if not records:
        raise UserError(f"{data_dir}: the dataset has no items to index")
    model, config = load_model(model_file)
    modalities = tuple(m for m in MODALITIES if m in model.encoders)
    data_cfg = config.get("data", {})
    sample_rate, seconds = int(data_cfg.get("audio_sample_rate", 16000)), float(data_cfg.get("audio_seconds", 6.0))
    transform = model.encoders["image"].transform(train=False) if "image" in modalities else None
    emb = embed_records(model, records, modalities, image_transform=transform, audio_sample_rate=sample_rate,
                        audio_seconds=seconds, batch_size=batch_size, progress=progress)
    items = {m: _items(records, m) for m in modalities}
    for m in modalities:
        if len(items[m]) != len(emb[m][0]):  # the row order contract with embed_records broke
            raise RuntimeError(f"{m}: {len(items[m])} items but {len(emb[m][0])} embeddings")
    build_seconds = time.perf_counter() - start
    meta = {"format": INDEX_FORMAT, "model_id": model_id, "model_sha256": digest, "dataset_md5": dataset_md5,
            "data_dir": str(Path(data_dir).resolve()), "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(build_seconds, 3), "dim": int(model.embed_dim), "modalities": list(modalities),
            "counts": {m: len(items[m]) for m in modalities}, "n_images": len(records),
            "audio_sample_rate": sample_rate, "audio_seconds": seconds, "search": "numpy exact inner product"}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        for m in modalities:
            _save_npy(tmp / f"{m}.npy", np.ascontiguousarray(emb[m][0], dtype=np.float32))
        from mmcl.data.manifest import write_json

        write_json(tmp / "items.json", items)
        write_json(tmp / "meta.json", meta)  # last: a folder with meta.json is complete
        if folder.exists():  # an index of an older file of the same model id: replaced whole
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if make_current:
        set_current_dataset(root, dataset_md5)
    return {**meta, "folder": str(folder), "reused": False}


@dataclass
class Index:
    """A loaded index: meta, embeddings {modality: [N, D]} and items {modality: [item dicts]}."""

    folder: Path
    meta: dict[str, Any]
    embeddings: dict[str, np.ndarray]
    items: dict[str, list[dict[str, Any]]]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Index:
        folder = Path(folder)
        meta_file = folder / "meta.json"
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StaleIndex(f"{folder}: not a complete index ({exc}); rebuild it with `mmcl index build`") from exc
        if meta.get("format") != INDEX_FORMAT:
            raise StaleIndex(f"{meta_file}: format {meta.get('format')!r}, this mmcl reads {INDEX_FORMAT!r}: rebuild")
        embeddings = {}
        for m in meta["modalities"]:
            try:
                emb = np.load(folder / f"{m}.npy", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise StaleIndex(f"{folder / f'{m}.npy'}: cannot read ({exc}); rebuild the index") from exc
            if emb.shape != (len(items.get(m, [])), meta["dim"]):
                raise StaleIndex(f"{folder / f'{m}.npy'}: shape {emb.shape} does not match {len(items.get(m, []))} "
                                 f"items x {meta['dim']}: rebuild the index")
            embeddings[m] = emb
        return cls(folder, meta, embeddings, items)

    @property
    def nbytes(self) -> int:
        return int(sum(e.nbytes for e in self.embeddings.values()))

    def search(self, query: np.ndarray, k: int = 10, modalities: list[str] | None = None) -> dict[str, list[dict]]:
        """Top-k items per gallery modality by cosine similarity (rows and query are unit norm)."""
        if k < 1:
            raise UserError(f"k must be at least 1, got {k}")
        wanted = modalities or list(self.embeddings)
        unknown = [m for m in wanted if m not in self.embeddings]
        if unknown:
            raise UserError(f"the index has no {', '.join(unknown)} items (it has {', '.join(self.embeddings)})")
        from threadpoolctl import threadpool_limits  # installed with scikit-learn

        q = np.asarray(query, dtype=np.float32).reshape(-1)  # [D]
        out: dict[str, list[dict]] = {}
        for m in wanted:
            # one BLAS thread: a [N, D] @ [D] product is memory-bound, and OpenBLAS's spinning threads on a busy
            # machine made it 30x slower (bench/RESULTS.md, Retrieval: p50 59 ms vs 2 ms over 7,000 items)
            with threadpool_limits(1, user_api="blas"):
                scores = self.embeddings[m] @ q  # [N]
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            top = top[np.lexsort((top, -scores[top]))]  # score descending, then row: a stable order
            out[m] = [{"rank": r + 1, "score": float(scores[i]), "modality": m, "row": int(i), **self.items[m][i]}
                      for r, i in enumerate(top)]
        return out

    def media_path(self, modality: str, row: int) -> Path:
        """The file of an item, only if it lies inside the dataset folder the index was built from."""
        from mmcl.data.paths import safe_join

        if modality not in self.items or not 0 <= row < len(self.items[modality]):
            raise UserError(f"no {modality} item {row} in the index")
        root = Path(self.meta["data_dir"])
        relative = os.path.relpath(self.items[modality][row]["path"], root)  # "../..." outside: refused below
        return safe_join(root, relative, source=self.folder / "items.json")


def open_champion_index(store: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                        dataset_md5: str | None = None) -> tuple[Index, dict[str, Any]]:
    """(index, registry entry) of the current champion over the current dataset version, or StaleIndex."""
    from mmcl.registry_models import ModelRegistry

    registry = ModelRegistry(store)
    champion = registry.champion()
    if champion is None:
        raise StaleIndex(f"the registry {registry.file} has no champion: promote a model first (mmcl models promote)")
    root = index_root(root)
    want = dataset_md5 or current_dataset(root)
    model_id = champion["id"]
    model_dir = root / _safe(model_id, "model id")
    built = sorted(p.parent.name for p in model_dir.glob("*/meta.json")) if model_dir.is_dir() else []
    hint = (f"build it: mmcl index build --store {registry.root} --root {root} --model {model_id} "
            f"--data-dir <dataset folder> --dataset-md5 {want or '<md5>'} (or materialise champion_index)")
    if not built:
        others = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise StaleIndex(f"no index for the champion {model_id} in {root} (indexes exist for: "
                         f"{', '.join(others) or 'no model'}); {hint}")
    if want is None:
        want = built[-1] if len(built) == 1 else None
        if want is None:
            raise StaleIndex(f"{root} names no current dataset version ({CURRENT_FILE}) and the champion has "
                             f"indexes for several ({', '.join(built)}): pass --dataset-md5")
    if want not in built:
        raise StaleIndex(f"stale index: the champion {model_id} was indexed on dataset version(s) "
                         f"{', '.join(built)}, the current dataset version is {want}; {hint}")
    index = Index.load(index_dir(root, model_id, want))
    digest = _sha256(champion["model_file"])
    if index.meta["model_sha256"] != digest:
        raise StaleIndex(f"stale index {index.folder}: built from a model file with sha256 "
                         f"{index.meta['model_sha256'][:12]}, the champion's {champion['model_file']} is now "
                         f"{digest[:12]}; {hint}")
    return index, champion
