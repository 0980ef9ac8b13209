"""Tiny hostile and good media made in the test, drops of a few rows, and `mmcl` as a real subprocess
(fixture `fh`: these helpers as one namespace, the suite's import mode has no test-helper modules)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from mmcl.data.manifest import sha256_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def png_bytes(seed: int, size: int = 8) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(seed: int, size: int = 16) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR declaring width x height, a tiny IDAT and IEND: a decompression bomb's
    header (PIL reads the size before any pixel)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def wav_bytes(seed: int, samples: int = 1600) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    wave = np.random.default_rng(seed).normal(0, 0.1, samples).astype("float32")
    soundfile.write(buffer, wave, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_drop(root: Path, name: str, rows: list[dict], files: dict[str, bytes], *, raw_lines: dict[int, bytes] | None = None,
               declare_hashes: bool = True) -> Path:
    """A landing drop: `files` (relative path -> bytes) and manifest.jsonl of `rows` (declared sha256 added
    for files that exist, so a later change is caught); raw_lines replaces manifest lines (0-based) by bytes."""
    drop = root / name
    for relative, data in files.items():
        (drop / relative).parent.mkdir(parents=True, exist_ok=True)
        (drop / relative).write_bytes(data)
    lines = []
    for row in rows:
        row = dict(row)
        for field in ("image", "audio"):
            path = drop / row[field] if isinstance(row.get(field), str) else None
            if declare_hashes and path is not None and row[field] in files and path.is_file():
                row.setdefault(f"{field}_sha256", sha256_file(path))
        lines.append(json.dumps(row).encode("utf-8"))
    for index, raw in (raw_lines or {}).items():
        lines[index] = raw
    drop.mkdir(parents=True, exist_ok=True)
    (drop / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return drop


def good_rows(prefix: str, n: int, seed: int) -> tuple[list[dict], dict[str, bytes]]:
    """n good train rows (image, caption, and audio on every other row) and their files."""
    rows, files = [], {}
    for i in range(n):
        rid = f"{prefix}-{i}"
        row = {"id": rid, "split": "train", "caption": f"a picture number {seed} {i} of {prefix}",
               "image": f"images/{rid}.png"}
        files[row["image"]] = png_bytes(seed * 100 + i)
        if i % 2 == 0:
            row["audio"] = f"audio/{rid}.wav"
            files[row["audio"]] = wav_bytes(seed * 100 + i)
        rows.append(row)
    return rows, files


def mmcl(cwd: Path, *args: str, fault: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m mmcl ARGS` in a real process; with `fault`, MMCL_FAULT_AT kills it there."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DVC_NO_ANALYTICS": "1"}
    env.pop("MMCL_FAULT_AT", None)
    if fault:
        env["MMCL_FAULT_AT"] = fault
    return subprocess.run([sys.executable, "-m", "mmcl", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def stray_temporaries(root: Path) -> list[str]:
    """Temporary files or folders mmcl left anywhere under root (git's and DVC's own folders excluded)."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if relative.parts[0] in (".git", ".dvc"):
            continue
        if ".tmp-" in path.name or path.name.startswith((".tmp", ".old-")):  # any naming, old or new
            found.append(relative.as_posix())
    return sorted(found)


def manifest_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def fh():
    import types

    names = ("png_bytes", "jpeg_bytes", "png_header_only", "wav_bytes", "write_drop", "good_rows", "mmcl", "git",
             "snapshot", "stray_temporaries", "manifest_ids")
    return types.SimpleNamespace(**{name: globals()[name] for name in names})
