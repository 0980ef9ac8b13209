"""The KDMCSE teacher for training: frozen encoders -> cached embeddings -> id lookup tables.

    tables = build_teacher_tables(cfg.data.teacher, records, corpus)
    batch["teacher"] = {"text": tables["text"](batch["text_ids"]), "image": tables["image"](batch["ids"])}

Embeddings are computed once per (teacher, dataset version) by mmcl.objectives.teacher.
cached_teacher_embeddings and reused by every later run; the objective only ever needs cosines between
items of one batch, so a table of unit vectors is all the training loop carries.

Teachers (data.teacher.kind):
- offline: text = a packaged sentence encoder (all-minilm-l6-v2, 384-d), image = ImageNet
  EfficientNet-Lite0 pooled features (1280-d), the project's own image tower. Nothing is downloaded.
- open_clip: both towers of one CLIP from a local checkpoint (the paper's teacher).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mmcl.config import DataConfig, TeacherConfig
from mmcl.data.flickr import FlickrRecord, load_image
from mmcl.objectives.teacher import (
    EncodeFn,
    TeacherTable,
    cached_teacher_embeddings,
    open_clip_encoders,
    sentence_encoder,
    teacher_cache_file,
)

TEACHER_IMAGE_SIZE = 224  # EfficientNet-Lite0's ImageNet resolution, whatever size the student sees


def caption_id(image_id: str, k: int) -> str:
    """Id of caption k of an image: the key of teacher text rows (as in TripleDataset's "text_id")."""
    return f"{image_id}#{k}"


def efficientnet_image_encoder(batch_size: int = 32) -> EncodeFn:
    """Image paths -> ImageNet EfficientNet-Lite0 pooled features [n, 1280] (frozen, eval mode)."""
    from mmcl.encoders.efficientnet import EfficientNetLite0Encoder

    encoder = EfficientNetLite0Encoder(weights="packaged", image_size=TEACHER_IMAGE_SIZE).eval()
    transform = encoder.transform(train=False)

    @torch.inference_mode()
    def encode(paths: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(paths), batch_size):
            pixels = torch.stack([transform(load_image(p)) for p in paths[start : start + batch_size]])
            out.append(encoder(pixels).float())  # [b, 1280]
        return torch.cat(out)

    return encode


def teacher_encoders(cfg: TeacherConfig) -> tuple[EncodeFn, EncodeFn]:
    """(text encode, image encode) of the configured teacher (loads the models)."""
    if cfg.kind == "offline":
        return sentence_encoder(cfg.text_model), efficientnet_image_encoder()
    if cfg.kind == "open_clip":
        return open_clip_encoders(cfg.open_clip_model, cfg.open_clip_checkpoint)
    raise ValueError(f"teacher kind {cfg.kind!r} has no encoders")


class _LazyEncoder:
    """Builds the teacher model only when the cache misses: a warm cache never loads a model."""

    def __init__(self, build) -> None:
        self.build, self.fn = build, None

    def __call__(self, items: list[str]):
        if self.fn is None:
            self.fn = self.build()
        return self.fn(items)


def build_teacher_tables(
    cfg: TeacherConfig,
    records: Sequence[FlickrRecord],
    corpus: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, TeacherTable]:
    """{"text": caption (and corpus) rows, "image": image rows} for every record given (train, val, test).

    Corpus sentences are keyed "corpus:<index>" like TextCorpusDataset's ids, embedded only when
    cfg.corpus is set (kdmcse's filter_text is the only reader of teacher text on text-only rows).
    """
    if cfg.kind == "none":
        return {}
    built: dict[str, tuple[EncodeFn, EncodeFn]] = {}

    def towers() -> tuple[EncodeFn, EncodeFn]:
        if not built:
            built["t"] = teacher_encoders(cfg)
        return built["t"]

    name = _teacher_name(cfg)
    text_ids = [caption_id(r.image_id, k) for r in records for k in range(len(r.captions))]
    texts = [c for r in records for c in r.captions]
    if cfg.corpus:
        text_ids += [f"corpus:{i}" for i in range(len(corpus))]
        texts += list(corpus)
    image_ids = [r.image_id for r in records]
    image_paths = [str(r.image_path) for r in records]
    common = {"cache_dir": cfg.cache_dir, "progress": progress}
    text_emb = cached_teacher_embeddings(
        text_ids, texts, _LazyEncoder(lambda: towers()[0]), f"{name}-text", **common
    )
    image_emb = cached_teacher_embeddings(
        image_ids, image_paths, _LazyEncoder(lambda: towers()[1]), f"{name}-image", batch_size=64, **common
    )
    return {
        "text": TeacherTable(text_ids, text_emb, teacher_cache_file(f"{name}-text", text_ids, texts, cfg.cache_dir)),
        "image": TeacherTable(image_ids, image_emb,
                              teacher_cache_file(f"{name}-image", image_ids, image_paths, cfg.cache_dir)),
    }


def describe_teacher(cfg: TeacherConfig, tables: dict[str, TeacherTable]) -> dict[str, object]:
    """What training read: the teacher's identity and the cache files its rows came from (for lineage)."""
    model = cfg.text_model if cfg.kind == "offline" else f"{cfg.open_clip_model} @ {cfg.open_clip_checkpoint}"
    return {"kind": cfg.kind, "name": _teacher_name(cfg), "model": str(model),
            "files": {m: str(t.file) for m, t in tables.items() if isinstance(t, TeacherTable) and t.file},
            "rows": {m: int(t.embeddings.shape[0]) for m, t in tables.items() if isinstance(t, TeacherTable)},
            "dim": {m: int(t.embeddings.shape[1]) for m, t in tables.items() if isinstance(t, TeacherTable)}}


def prepare_teacher(data: DataConfig, progress: bool = False) -> dict[str, object] | None:
    """Embed (or find cached) the teacher rows a training run on `data` will read, with the same records and
    the same cache keys as training (TripleDataModule.setup); None when the config uses no teacher."""
    if data.teacher.kind == "none":
        return None
    from mmcl.train.datamodule import capped_corpus, select_records

    records = select_records(data)
    held_out = {r.image_id for r in records["val"] + records["test"]}
    corpus = capped_corpus(data, held_out) if data.text_corpus and data.teacher.corpus else ()
    tables = build_teacher_tables(data.teacher, records["train"] + records["val"] + records["test"], corpus,
                                  progress=progress)
    return describe_teacher(data.teacher, tables)


def _teacher_name(cfg: TeacherConfig) -> str:
    """The cache key's teacher part, known without loading any model."""
    if cfg.kind == "offline":
        return f"offline-{Path(cfg.text_model).name.lower()}-effnetlite0"
    return f"openclip-{cfg.open_clip_model}-{Path(str(cfg.open_clip_checkpoint)).stem}"
