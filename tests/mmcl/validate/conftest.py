"""Real drops cut from the Flickr8k triples, a DVC repository in tmp, and one drop with crafted defects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mmcl.data.drops import simulate_drops
from mmcl.data.manifest import sha256_file

PER_DROP = 16


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    """Three clean drops of 16 real triples each (drop-0003 is the one the defects are crafted in)."""
    root = tmp_path_factory.mktemp("landing")
    simulate_drops(root, n_drops=3, per_drop=PER_DROP, seed=7)
    return root


def read_manifest(drop: Path) -> list[dict]:
    return [json.loads(line) for line in (drop / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def write_manifest_bytes(drop: Path, records: list[dict], raw_lines: dict[int, bytes] | None = None) -> None:
    """Write records as JSONL; raw_lines replaces chosen lines (0-based) by exact bytes."""
    lines = [json.dumps(r).encode("utf-8") for r in records]
    for index, raw in (raw_lines or {}).items():
        lines[index] = raw
    (drop / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def _craft_bad_drop(landing: Path, out: Path) -> tuple[Path, dict[str, str]]:
    """Copy drop-0003 to out/drop-0003 and plant one defect per row; returns (drop, {defect: row id}).

    Rows 0-8 get the defects; rows 9-15 stay good."""
    drop = out / "drop-0003"
    shutil.copytree(landing / "drop-0003", drop)
    records = read_manifest(drop)
    train_donor = next(r for r in read_manifest(landing / "drop-0001") if r["split"] == "train")
    ids = {}

    r = records[0]  # corrupt JPEG: garbage bytes, declared hash updated so only decoding fails
    (drop / r["image"]).write_bytes(b"\x00JFIF garbage, not an image" * 40)
    r["image_sha256"] = sha256_file(drop / r["image"])
    ids["corrupt_jpeg"] = r["id"]

    r = records[1]  # truncated MP3, cut mid-frame; the manifest still declares the full file's hash
    data = (drop / r["audio"]).read_bytes()
    (drop / r["audio"]).write_bytes(data[: len(data) * 6 // 10 + 101])
    ids["truncated_mp3"] = r["id"]

    records[2]["caption"] = ""
    ids["empty_caption"] = records[2]["id"]

    del records[3]["split"]
    ids["missing_split"] = records[3]["id"]

    records[4]["id"] = records[5]["id"]
    ids["duplicate_id"] = records[5]["id"]

    records[6]["image"] = f"../drop-0001/{train_donor['image']}"
    ids["escaping_path"] = records[6]["id"]

    r = records[8]  # a test image that is also in train (versioned in drop-0001)
    shutil.copyfile(landing / "drop-0001" / train_donor["image"], drop / r["image"])
    r["image_sha256"], r["split"] = train_donor["image_sha256"], "test"
    ids["leak"] = r["id"]
    ids["leak_donor"] = train_donor["id"]

    # non-UTF-8 text: byte 0xff inside the caption of row 7 (line 8)
    raw = json.dumps(records[7]).encode("utf-8").replace(b'"caption": "', b'"caption": "caf\xff ', 1)
    ids["non_utf8"] = records[7]["id"]
    write_manifest_bytes(drop, records, {7: raw})
    return drop, ids


@pytest.fixture
def craft_bad_drop():
    return _craft_bad_drop


@pytest.fixture
def run_git():
    return git
