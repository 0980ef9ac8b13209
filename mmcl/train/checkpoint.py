"""Saving and loading trained models and training checkpoints. Loading never unpickles code:
torch.load(weights_only=True), and every way a file can fail to load (empty, truncated, not a torch file,
holding objects other than weights) becomes a UserError that says which it is. Writing is atomic: a temp
file beside the target, fsynced, renamed; a kill or a full disk leaves the previous file.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from mmcl.errors import UserError
from mmcl.faults import maybe_fault

MODEL_FILE = "model.pt"  # weights + resolved config; no optimiser state (that lives in checkpoints/)


def atomic_torch_save(obj: Any, path: Path, fault_points: tuple[str, ...] = ()) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a kill never leaves half a file, and a
    failed write (a full disk) leaves neither a partial file nor the temp file.

    `fault_points`: mmcl.faults points checked between the complete temp file and the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        for point in fault_points:
            maybe_fault(point)
        os.replace(tmp, path)
    except OSError as exc:
        reason = "no space left on device (ENOSPC)" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise UserError(f"cannot write {path}: {reason}; the previous file (if any) is unchanged. "
                        "Free space (or fix the cause) and rerun") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: Path, name: str) -> None:
    """Delete the temp files a killed atomic_torch_save of `folder/name` left (call before writing again)."""
    for stale in folder.glob(f".{name}.*.tmp"):
        stale.unlink(missing_ok=True)


def read_torch_file(path: Path) -> dict[str, Any]:
    """torch.load(weights_only=True) of `path`, as a dict; UserError naming the file and what is wrong with it.

    torch's own messages mislead here: garbage gives "101" (a pickle opcode), and a refused file "re-run with
    weights_only=False", which would run whatever code the file holds."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise UserError(f"{path} is empty (0 bytes): a write interrupted by a kill or a full disk")
    is_zip, is_pickle = head.startswith(b"PK\x03\x04"), head[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise UserError(f"{path} is not a PyTorch file (it starts with {head!r}; a torch file is a zip archive)")
    try:
        with warnings.catch_warnings():  # torch warns about legacy pickles: the UserError below says it plainly
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (every torch/zip/pickle failure becomes the reason, never a traceback)
        text = str(exc)
        if "Weights only load failed" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            opcode = re.search(r"Unsupported operand (\d+)", text)
            what = (f"it names {found.group(1)}" if found else
                    f"a raw pickle, opcode {opcode.group(1)}" if opcode else "types other than tensors and plain data")
            raise UserError(f"{path} holds Python objects, not only weights ({what}): refused without running it "
                            "(mmcl loads weights-only files; a file from elsewhere may be malicious)") from exc
        first = text.split(". ")[0].splitlines()[0] if text.strip() else type(exc).__name__
        if "central directory" in text or "PytorchStreamReader" in text or isinstance(exc, EOFError):
            raise UserError(f"{path} is truncated or damaged ({size} bytes; torch cannot read it: {first})") from exc
        raise UserError(f"{path} cannot be read as a PyTorch file ({type(exc).__name__}: {first})") from exc
    if not isinstance(blob, dict):
        raise UserError(f"{path} holds a {type(blob).__name__}, not a checkpoint (a dict of weights and settings)")
    return blob


def save_model(model: torch.nn.Module, config: dict[str, Any], path: Path) -> None:
    atomic_torch_save({"config": config, "state_dict": model.state_dict(), "format": "mmcl-model-v1"}, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory -> its model.pt (or checkpoints/last.ckpt while training); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / MODEL_FILE, path / "checkpoints" / "last.ckpt"):
            if candidate.is_file():
                return candidate
        raise UserError(f"{path} holds no {MODEL_FILE} nor checkpoints/last.ckpt: not an mmcl run directory")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    return path


def load_model(path: str | Path, map_location: str = "cpu"):
    """(MultiModalModel in eval mode, resolved config dict) from a run dir, model.pt or Lightning .ckpt."""
    from mmcl.config import config_from_dict
    from mmcl.model import build_model

    file = resolve_checkpoint(path)
    blob = read_torch_file(file)
    try:
        if "hyper_parameters" in blob:  # a Lightning checkpoint
            config = blob["hyper_parameters"]["config"]
            state = {k[len("model."):]: v for k, v in blob["state_dict"].items() if k.startswith("model.")}
        elif blob.get("format") == "mmcl-model-v1":
            config, state = blob["config"], blob["state_dict"]
        else:
            raise UserError(f"{file} is neither an mmcl model file nor a Lightning checkpoint (keys: "
                            f"{', '.join(map(str, list(blob)[:8])) or 'none'})")
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{file} looks like a checkpoint but lacks its config or weights ({exc!r})") from exc
    try:
        cfg = config_from_dict(config)
    except UserError as exc:
        raise UserError(f"{file}: the config stored in it is not valid: {exc}") from exc
    model = build_model(cfg.model, tuple(cfg.data.modalities))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"{file}: its weights do not fit the model its config describes "
                        f"({str(exc).splitlines()[0]})") from exc
    return model.eval(), config
