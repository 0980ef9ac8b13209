"""Run configuration: frozen dataclasses loaded from YAML, overridden with `--set a.b=value`.

One resolved config per run; its hash names the run directory, so the same command resumes the same
run. Unknown keys, wrong types and out-of-range numbers (RANGES: every numeric field has one) fail before
anything is built, naming the dotted key and the allowed range.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmcl.errors import ConfigError

MODALITIES = ("text", "image", "audio")


@dataclass(frozen=True)
class EncoderConfig:
    name: str  # registry name, e.g. hf_text, efficientnet_lite0, open_clip_image, audio_conv
    freeze: bool = False  # frozen encoders run under no_grad in eval mode; only their head trains
    lr: float | None = None  # learning rate for this encoder (None: train.lr)
    options: dict[str, Any] = field(default_factory=dict)  # passed to the encoder factory


@dataclass(frozen=True)
class TeacherConfig:
    """Frozen teacher for KDMCSE: similarities between batch items, embedded once per dataset version."""

    kind: str = "none"  # none | offline (packaged sentence encoder + ImageNet EfficientNet-Lite0) | open_clip
    text_model: str = "all-minilm-l6-v2"  # offline text teacher (a packaged name or sentence-transformers folder)
    open_clip_model: str | None = None  # kind open_clip: architecture name, e.g. ViT-B-32
    open_clip_checkpoint: str | None = None  # kind open_clip: local checkpoint file (nothing is downloaded)
    corpus: bool = False  # also embed the text-only corpus (only kdmcse's filter_text reads it there)
    cache_dir: str | None = None  # None: <MMCL_CACHE_DIR or ./.mmcl_cache>/teacher


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "flickr8k_triples"
    data_dir: str | None = None  # None: $MMCL_DATA_DIR, else ../shared/data
    modalities: tuple[str, ...] = ("text", "image")
    eval_splits: tuple[str, ...] = ("test",)  # held out by image: none of these images is trained on
    batch_size: int = 64
    num_workers: int = 0
    max_train_images: int | None = None  # cap for quick runs
    max_eval_images: int | None = None
    image_size: int = 224
    audio_seconds: float = 6.0  # clips are cut/padded to this length
    audio_sample_rate: int = 16000
    cache_frozen_features: bool = True  # frozen image/text towers: features computed once, cached on disk
    missing_modality_rate: float = 0.0  # drop modalities at random in training (tests missing-view handling)
    # MCSE/KDMCSE: unlabeled text-only batches alternate with paired batches; () trains on pairs only
    text_corpus: tuple[str, ...] = ()  # sources: flickr8k_captions, senteval_transfer
    text_batches_per_paired: int = 1  # text-only batches between two paired batches
    max_corpus_sentences: int | None = None  # cap after shuffling (quick runs)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 256
    head: str = "linear"  # linear | mlp | none (none needs equal encoder widths)
    temperature_init: float = 0.07  # CLIP's initial τ
    learnable_temperature: bool = True
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectiveConfig:
    name: str = "clip"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    max_epochs: int = 5
    max_steps: int = -1  # -1: no step limit
    lr: float = 1e-3  # heads and temperature; encoders use their own lr when set
    weight_decay: float = 0.1
    warmup_steps: int = 20
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true on CPU
    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"  # ddp for several GPUs
    num_nodes: int = 1  # torchrun across nodes: devices x num_nodes must equal the world size
    checkpoint_every_n_steps: int = 25  # last.ckpt is rewritten this often, for resume after a kill
    val_every_n_epochs: int = 1
    log_every_n_steps: int = 5
    grad_clip: float | None = 1.0
    progress_bar: bool = True


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    seed: int = 0
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def run_dir(self) -> Path:
        return Path(self.runs_dir) / f"{self.name}-{self.config_hash()}"


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert `value` to annotation `tp`, raising ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} does not match {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return _build(tp, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(tp)
        return {k: _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (et, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, et, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]!r} (known here: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


class _YamlLoader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where a float needs a dot, so `1e-06`, `1E-5` and `+1e3` are strings (and an
    ordinary learning rate fails as "does not match float"); YAML 1.2 and JSON read them as numbers. This
    loader keeps everything else of PyYAML's safe schema and replaces only the float rule with YAML 1.2's."""


_FLOAT = "tag:yaml.org,2002:float"
_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_YamlLoader.add_implicit_resolver(_FLOAT, re.compile(r"""^(?:
      [-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?   # 1.5  5.  .5  1.0e-6  -.5
    | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+                                   # 1e-06  1E-5  +1e3
    | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass: no Python objects)


def _set_dotted(tree: dict[str, Any], dotted: str, raw: str) -> None:
    try:
        value = _yaml(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"--set {dotted}={raw}: the value is not valid YAML ({problem})") from exc
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a mapping")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read YAML at `path`, apply `key=value` overrides (values parsed as YAML, numbers by YAML 1.2), validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tree = _yaml(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), raw)
    cfg = _build(RunConfig, tree)
    _check_semantics(cfg)
    return cfg


def config_from_dict(tree: dict[str, Any]) -> RunConfig:
    cfg = _build(RunConfig, tree)
    _check_semantics(cfg)
    return cfg


@dataclass(frozen=True)
class Range:
    """The allowed values of one numeric key: bounds (closed unless *_open), null, and special values such
    as -1 ("no limit") that mean something of their own. Non-finite numbers (.nan, .inf) are never allowed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    null: bool = False
    special: tuple[int, ...] = ()

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.null
        if value in self.special:
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {low}"
        else:
            text = f"{'<' if self.high_open else '<='} {high}"
        text = " or ".join([*(_number(v) for v in self.special), text])
        return text + " or null" if self.null else text


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


POSITIVE = Range(0, low_open=True)
# Every int/float field of the dataclasses above, by dotted key ("*" = any encoder): checked before anything is
# built, so no value is silently taken for something else (max_train_images 0 is not "all") and no Lightning or
# torch error surfaces later. tests/mmcl/test_config.py fails for a numeric field missing here.
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1),  # numpy's seed range, which Lightning's seed_everything enforces
    "data.batch_size": Range(2),  # contrastive: every sample needs at least one negative
    "data.num_workers": Range(0),
    "data.max_train_images": Range(1, null=True),  # null: all images
    "data.max_eval_images": Range(1, null=True),
    "data.image_size": Range(16, 4096),  # EfficientNet downsamples 32x: below 16 nothing is left to see
    "data.audio_seconds": Range(0, 600, low_open=True),
    "data.audio_sample_rate": Range(1000, 192000),
    "data.missing_modality_rate": Range(0, 1, high_open=True),  # 1 would leave no pair to contrast
    "data.text_batches_per_paired": Range(1),
    "data.max_corpus_sentences": Range(1, null=True),
    "model.embed_dim": Range(1),
    "model.temperature_init": POSITIVE,
    "model.encoders.*.lr": Range(0, low_open=True, null=True),  # null: train.lr
    "train.max_epochs": Range(1),
    "train.max_steps": Range(1, special=(-1,)),  # -1: no step limit
    "train.lr": POSITIVE,
    "train.weight_decay": Range(0),
    "train.warmup_steps": Range(0),
    "train.devices": Range(1, special=(-1,)),  # -1: every device; a string is "auto" or device indices "0,1"
    "train.num_nodes": Range(1),
    "train.checkpoint_every_n_steps": Range(1),
    "train.val_every_n_epochs": Range(1),
    "train.log_every_n_steps": Range(1),
    "train.grad_clip": Range(0, low_open=True, null=True),  # null: no clipping
}
# Options are passed through to the encoder/objective factories (any keys); these names mean the same in every
# factory that takes them, so their ranges are checked here too, before a model is built.
OPTION_RANGES: dict[str, Range] = {
    "temperature": Range(0, low_open=True, null=True),  # null: the model's learnable temperature
    "bandwidth": Range(0, low_open=True, null=True),
    "dropout": Range(0, 1, high_open=True, null=True),
    "momentum": Range(0, 1),
    "queue_size": Range(1),
    "max_length": Range(1),
    "num_classes": Range(1),
    "min_present": Range(1),
    "image_size": Range(16, 4096, null=True),
}
PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps", "tpu")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true",
              "ddp_find_unused_parameters_false", "fsdp", "deepspeed", "single_device")


def _check_range(key: str, value: Any, allowed: Range) -> None:
    if not allowed.allows(value):
        raise ConfigError(f"{key}: {value!r} is out of range: must be {allowed.describe()}")


def _check_options(where: str, options: dict[str, Any]) -> None:
    for name, value in options.items():
        if name in OPTION_RANGES:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{where}.options.{name}: expected a number, got {type(value).__name__} {value!r}")
            _check_range(f"{where}.options.{name}", value, OPTION_RANGES[name])


def _check_numbers(cfg: RunConfig) -> None:
    tree = cfg.to_dict()
    for key, allowed in RANGES.items():
        section, _, name = key.rpartition(".")
        if section == "model.encoders.*":
            for modality, encoder in tree["model"]["encoders"].items():
                _check_range(f"model.encoders.{modality}.{name}", encoder[name], allowed)
            continue
        node = tree
        for part in filter(None, section.split(".")):
            node = node[part]
        if key == "train.devices" and isinstance(node[name], str):
            if not re.fullmatch(r"auto|-1|[0-9]+|[0-9]+(,[0-9]*)+", node[name]):
                raise ConfigError(f"train.devices: {node[name]!r} is not a device count, -1, \"auto\" or indices like \"0,1\"")
            continue
        _check_range(key, node[name], allowed)
    for modality, encoder in cfg.model.encoders.items():
        _check_options(f"model.encoders.{modality}", encoder.options)
    _check_options("objective", cfg.objective.options)
    for key, value, known in (("train.precision", cfg.train.precision, PRECISIONS),
                              ("train.accelerator", cfg.train.accelerator, ACCELERATORS),
                              ("train.strategy", cfg.train.strategy, STRATEGIES)):
        if value not in known:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(known)}")


def _check_semantics(cfg: RunConfig) -> None:
    _check_numbers(cfg)
    for m in cfg.data.modalities:
        if m not in MODALITIES:
            raise ConfigError(f"data.modalities: unknown modality {m!r} (known: {', '.join(MODALITIES)})")
        if m not in cfg.model.encoders:
            raise ConfigError(f"model.encoders.{m}: no encoder configured for modality {m!r}")
    if cfg.model.head not in ("linear", "mlp", "none"):
        raise ConfigError(f"model.head: {cfg.model.head!r} is not one of linear, mlp, none")
    _check_text_only(cfg.data)


def _check_text_only(data: DataConfig) -> None:
    """Text-only batches and the teacher: known names, and nothing that silently does nothing."""
    if data.text_corpus:  # lazy, and only when needed: the data code imports torch (seconds)
        from mmcl.data.text_corpus import CORPUS_SOURCES

    for source in data.text_corpus:
        if source not in CORPUS_SOURCES:
            raise ConfigError(f"data.text_corpus: unknown source {source!r} (known: {', '.join(CORPUS_SOURCES)})")
    if data.text_corpus and "text" not in data.modalities:
        raise ConfigError("data.text_corpus: text-only batches need 'text' in data.modalities")
    kinds = ("none", "offline", "open_clip")
    if data.teacher.kind not in kinds:
        raise ConfigError(f"data.teacher.kind: {data.teacher.kind!r} is not one of {', '.join(kinds)}")
    if data.teacher.kind == "open_clip" and not (data.teacher.open_clip_model and data.teacher.open_clip_checkpoint):
        raise ConfigError("data.teacher: kind open_clip needs open_clip_model and open_clip_checkpoint")
