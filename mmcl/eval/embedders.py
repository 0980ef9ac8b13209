"""Frozen text embedders behind one protocol, and the `--model` resolution of `mmcl eval`.

    embedder = load_text_embedder("all-minilm-l6-v2")          # packaged sentence-transformers model
    embedder = load_text_embedder("runs/demo-1a2b3c")           # mmcl run dir / model.pt / .ckpt
    embedder = load_text_embedder("/models/bert", pooling="first_last_avg")   # plain HF folder
    emb = embedder.encode(sentences)                            # np.float32 [N, D]

Speed: `encode` embeds each distinct sentence once. A Hugging Face tokenizer runs once over all of them
(no padding); the ids give the sort keys, and the length-sorted batches (longest first, so padding is small
and an out-of-memory shows at once) are padded from those ids, so no sentence is tokenised twice. The
forward runs under torch.inference_mode(); evaluators pass every sentence of every set in one call so
duplicates across sets are shared too. Threads: every core this process may use (configure_threads).

Maximum length: training truncates at the text encoder's `max_length` (32 tokens, SimCSE); evaluation
does not (SimCSE's SentEval batcher pads without truncating), so checkpoints and plain HF folders are
evaluated up to the backbone's position limit (512 for BERT/MiniLM) unless `max_length` is given.
A sentence-transformers folder keeps its own `max_seq_length`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmcl.errors import UserError

HF_POOLINGS = ("cls", "cls_before_pooler", "mean", "first_last_avg")
DEFAULT_BATCH_SIZE = 64


@runtime_checkable
class TextEmbedder(Protocol):
    """Anything with `encode(sentences) -> float32 [N, D]` and a `describe()` dict for reports."""

    def encode(self, sentences: list[str]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


POLITE = "polite"
CONTENTION_SAMPLE_S = 0.1


def busy_cores(interval: float = CONTENTION_SAMPLE_S) -> float:
    """Cores other processes keep busy NOW: /proc/stat sampled twice, `interval` seconds apart.

    Why not the load average: it lags by minutes, so right after any job it reports cores that are idle
    again (mmcl then ran on 1 of 2 free cores). This process sleeps while sampling, so it does not count
    itself. 0.0 where /proc/stat cannot be read (not Linux): then nothing is known to compete.
    """
    def sample() -> tuple[int, int, int] | None:
        try:
            with open("/proc/stat") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        fields = [int(x) for x in lines[0].split()[1:8]]  # user nice system idle iowait irq softirq
        cpus = sum(1 for line in lines[1:] if line.startswith("cpu"))
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields), cpus

    first = sample()
    time.sleep(interval)
    second = sample()
    if first is None or second is None or second[1] <= first[1]:
        return 0.0
    return (second[0] - first[0]) / (second[1] - first[1]) * second[2]


def default_threads(threads: int | str | None = None) -> int:
    """Torch threads for `--threads`: None -> every core in this process's affinity mask; a positive int
    (or its digits) -> that; "polite" -> the cores not busy right now (busy_cores), at least 1.

    Why all cores by default: on an idle machine that is the fastest setting, and a lagging load average
    halved the speed right after any job. The polite mode is for a machine shared on purpose: there,
    threads beyond the free cores spin-wait in OpenMP (on the 2-core CI box under a load of 8, 2 threads
    took 4.7x the wall time of 1).
    """
    cores = len(os.sched_getaffinity(0))
    if threads is None:
        return cores
    if threads == POLITE:
        # /proc/stat counts the whole machine, which may hold more cores than this process may use
        free = (os.cpu_count() or cores) - busy_cores()
        return max(1, min(cores, round(free)))
    if isinstance(threads, str) and threads.strip().isdigit():  # from the command line
        threads = int(threads)
    if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
        return threads
    raise UserError(f"--threads {threads!r}: expected a positive integer or {POLITE!r}")


def configure_threads(threads: int | str | None = None) -> int:
    """Set torch's intra-op threads to default_threads(threads); returns the number in use."""
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the Rust tokenizer
    torch.set_num_threads(default_threads(threads))
    return torch.get_num_threads()


class BatchedTextEmbedder:
    """Shared fast path: unique sentences, tokenised once, length-sorted batches, inference mode."""

    kind = "abstract"

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE, show_progress: bool = True) -> None:
        self.batch_size, self.show_progress = batch_size, show_progress
        self.source = ""
        self.name: str | None = None  # what the user called it (e.g. the packaged short name)
        self.tokenizer: Any = None  # a HF tokenizer enables the tokenise-once path (set by subclasses)
        self.max_length: int | None = None  # its truncation length

    def embed_tokens(self, features: dict[str, Any]):  # -> Tensor [B, D]
        """Embeddings of one padded batch (input_ids, attention_mask, ... as the tokenizer names them)."""
        raise NotImplementedError

    def embed_batch(self, batch: list[str]):  # -> Tensor [B, D]
        """Embeddings of raw sentences: towers without a HF tokenizer (sorted by characters)."""
        raise NotImplementedError

    def encode(self, sentences: list[str]) -> np.ndarray:
        """Embeddings in input order: np.float32 [N, D]."""
        import torch
        from tqdm.auto import tqdm

        unique = list(dict.fromkeys(sentences))
        if not unique:
            raise ValueError("encode() needs at least one sentence")
        tokens = None
        if self.tokenizer is not None:  # one call over all sentences: the Rust tokenizer batches them
            tokens = dict(self.tokenizer(unique, truncation=True, max_length=self.max_length))
        lengths = [len(x) for x in tokens["input_ids"]] if tokens else [len(s) for s in unique]
        order = sorted(range(len(unique)), key=lambda i: -lengths[i])
        out: np.ndarray | None = None
        batches = range(0, len(order), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(
                batches, desc="encode", unit="batch", disable=not self.show_progress, leave=False
            ):
                idx = order[start : start + self.batch_size]
                if tokens is not None:
                    emb = self.embed_tokens(pad_tokens(tokens, idx, self.tokenizer.pad_token_id))
                else:
                    emb = self.embed_batch([unique[i] for i in idx])
                emb = emb.float().cpu().numpy()  # [B, D]
                if out is None:
                    out = np.empty((len(unique), emb.shape[1]), dtype=np.float32)
                out[idx] = emb
        row = {s: i for i, s in enumerate(unique)}
        return out[[row[s] for s in sentences]]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "source": self.source, "batch_size": self.batch_size,
                "tokenised_once": self.tokenizer is not None}


def pad_tokens(tokens: dict[str, list[list[int]]], idx: list[int], pad_id: int) -> dict[str, Any]:
    """Rows `idx` of unpadded tokenizer output as right-padded int64 tensors [B, L], L = longest row:
    what the tokenizer returns with padding=True (input_ids padded with pad_id, every other field with 0)."""
    import torch

    width = max(len(tokens["input_ids"][i]) for i in idx)
    out = {}
    for key, rows in tokens.items():
        arr = np.full((len(idx), width), pad_id if key == "input_ids" else 0, dtype=np.int64)  # [B, L]
        for r, i in enumerate(idx):
            arr[r, : len(rows[i])] = rows[i]
        out[key] = torch.from_numpy(arr)
    return out


def _hf_tokenizer(tokenizer: Any) -> Any:
    """The tokenizer when batches may be padded from its ids (a HF tokenizer padding on the right), else None."""
    from transformers import PreTrainedTokenizerBase

    ok = isinstance(tokenizer, PreTrainedTokenizerBase) and tokenizer.pad_token_id is not None
    return tokenizer if ok and tokenizer.padding_side == "right" else None


class SentenceTransformerEmbedder(BatchedTextEmbedder):
    """A sentence-transformers folder, run through its own modules (Transformer, Pooling, Dense, ...)."""

    kind = "sentence-transformers"
    PROBE = ("a man is playing a guitar .", "hi", "two dogs run across a snowy field while a third one sleeps")

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from sentence_transformers import SentenceTransformer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.source = str(path)
        self.model = SentenceTransformer(str(path), device="cpu").eval()
        self.tokenizer, self.max_length = _hf_tokenizer(self.model.tokenizer), self.model.max_seq_length
        if self.tokenizer is not None and not self._own_preprocess_agrees():
            self.tokenizer = None  # a model whose preprocessing does more than tokenise: use its own per batch

    def _own_preprocess_agrees(self) -> bool:
        """Padding our ids gives exactly the tensors of the model's own preprocess (text-only modules)."""
        import torch

        theirs = self.model.preprocess(list(self.PROBE))
        ours = pad_tokens(dict(self.tokenizer(list(self.PROBE), truncation=True, max_length=self.max_length)),
                          list(range(len(self.PROBE))), self.tokenizer.pad_token_id)
        return set(theirs) == {*ours, "modality"} and theirs["modality"] == "text" and all(
            torch.equal(theirs[k], ours[k]) for k in ours
        )

    def embed_tokens(self, features: dict[str, Any]):
        return self.model({**features, "modality": "text"})["sentence_embedding"]  # [B, D]

    def embed_batch(self, batch: list[str]):
        return self.model(self.model.preprocess(batch))["sentence_embedding"]  # [B, D]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_seq_length": self.model.max_seq_length}


def _eval_max_length(backbone, tokenizer) -> int:
    limit = int(getattr(backbone.config, "max_position_embeddings", 512) or 512)
    model_max = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, model_max, 512))


class HuggingFaceEmbedder(BatchedTextEmbedder):
    """A plain transformers folder with a pooling rule (mmcl.encoders.text.TextEncoder, no head)."""

    kind = "huggingface"

    def __init__(self, path: str | Path, pooling: str = "mean", max_length: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        from mmcl.encoders.text import TextEncoder

        if pooling not in HF_POOLINGS:
            raise UserError(f"--pooling {pooling!r} is not one of {', '.join(HF_POOLINGS)}")
        self.source, self.pooling = str(path), pooling
        self.encoder = TextEncoder(model=str(path), pooling=pooling).eval()
        self.encoder.max_length = max_length or _eval_max_length(
            self.encoder.backbone, self.encoder.tokenizer
        )
        self.tokenizer, self.max_length = _hf_tokenizer(self.encoder.tokenizer), self.encoder.max_length

    def embed_tokens(self, features: dict[str, Any]):
        return self.encoder(features)  # [B, H]

    def embed_batch(self, batch: list[str]):
        return self.encoder(self.encoder.tokenize(batch))  # [B, H]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pooling": self.pooling, "max_length": self.encoder.max_length}


class CheckpointEmbedder(BatchedTextEmbedder):
    """The text tower of an mmcl run: encoders["text"] then heads["text"] (unit norm), or the encoder
    output alone with `use_head=False` (SimCSE/KDMCSE evaluate the raw [CLS] without the MLP)."""

    kind = "mmcl-checkpoint"

    def __init__(
        self,
        path: str | Path,
        pooling: str | None = None,
        use_head: bool = True,
        max_length: int | None = None,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if model is None:
            from mmcl.train.checkpoint import load_model

            model, _ = load_model(path)
        if "text" not in model.encoders:
            raise UserError(f"{path}: this model has no text tower (modalities: {', '.join(model.encoders)})")
        self.source, self.model, self.use_head = str(path), model.eval(), use_head
        self.text = model.encoders["text"]
        if pooling is not None:
            if not hasattr(self.text, "pooling"):
                raise UserError(f"--pooling does not apply to the {type(self.text).__name__} text tower")
            self.text.pooling = pooling
        if hasattr(self.text, "backbone") and hasattr(self.text, "max_length"):
            self.text.max_length = max_length or _eval_max_length(self.text.backbone, self.text.tokenizer)
            # the tower's own tokenize() truncates at this length too: ids padded here match it
            self.tokenizer = _hf_tokenizer(getattr(self.text, "tokenizer", None))
            self.max_length = self.text.max_length

    def embed_tokens(self, tokens: dict[str, Any]):
        if self.use_head:
            return self.model.encode("text", tokens)  # [B, D] unit norm
        return self.text(tokens)  # [B, H]

    def embed_batch(self, batch: list[str]):
        return self.embed_tokens(self.text.tokenize(batch))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "pooling": getattr(self.text, "pooling", None),
            "max_length": getattr(self.text, "max_length", None),
            "use_head": self.use_head,
        }


def is_checkpoint(path: Path) -> bool:
    if path.is_file():
        return path.suffix in (".ckpt", ".pt")
    return (path / "model.pt").is_file() or (path / "checkpoints" / "last.ckpt").is_file()


def _st_transformer_dir(path: Path) -> Path:
    """The folder of the Transformer module inside a sentence-transformers folder (usually the root)."""
    modules = json.loads((path / "modules.json").read_text())
    for module in modules:
        if module.get("type", "").endswith("Transformer"):
            return path / module.get("path", "")
    raise UserError(f"{path}/modules.json has no Transformer module; --pooling cannot be applied")


def resolve_model_path(model: str) -> Path:
    """A local path, or the folder of a packaged short name (mmcl.encoders.hub)."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    from mmcl.encoders.hub import PACKAGED_TEXT_MODELS, resolve_text_model

    if model.lower() in PACKAGED_TEXT_MODELS:
        return Path(resolve_text_model(model))
    raise UserError(
        f"--model {model!r} is not an existing path nor a packaged model "
        f"({', '.join(sorted(PACKAGED_TEXT_MODELS))}); give an mmcl run dir or checkpoint, "
        "a sentence-transformers folder, or a Hugging Face model folder"
    )


def load_text_embedder(
    model: str,
    pooling: str | None = None,
    *,
    use_head: bool = True,
    max_length: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool = True,
) -> TextEmbedder:
    """Resolve `--model`: mmcl checkpoint/run dir, sentence-transformers folder (or packaged short name),
    or a plain Hugging Face folder. `pooling` on a sentence-transformers folder bypasses its Pooling and
    runs the bare backbone with that rule (e.g. to compare cls vs mean)."""
    embedder = _build_embedder(
        resolve_model_path(model),
        pooling,
        use_head,
        max_length,
        {"batch_size": batch_size, "show_progress": show_progress},
    )
    embedder.name = model
    return embedder


def _build_embedder(
    path: Path, pooling: str | None, use_head: bool, max_length: int | None, common: dict[str, Any]
) -> BatchedTextEmbedder:
    if is_checkpoint(path):
        return CheckpointEmbedder(path, pooling, use_head=use_head, max_length=max_length, **common)
    if path.is_dir() and (path / "modules.json").is_file():
        if pooling is None:
            return SentenceTransformerEmbedder(path, **common)
        return HuggingFaceEmbedder(_st_transformer_dir(path), pooling, max_length, **common)
    if path.is_dir() and (path / "config.json").is_file():
        return HuggingFaceEmbedder(path, pooling or "mean", max_length, **common)
    raise UserError(
        f"--model {path} is neither an mmcl run dir/checkpoint (model.pt, checkpoints/last.ckpt, *.ckpt), "
        "a sentence-transformers folder (modules.json) nor a Hugging Face folder (config.json)"
    )
