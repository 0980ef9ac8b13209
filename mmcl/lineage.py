"""Lineage records: where a dataset version (and, from issue #7, a model) came from.

Records are JSON files in a lineage store (a folder, tracked in git; default `lineage/` under the current
directory, or $MMCL_LINEAGE_DIR):

    lineage/datasets/<md5 without .dir>.json     one per dataset version (written by `mmcl data version`)

A dataset record holds its DVC md5, the dataset folder, the md5 it grew from, the source drops with their
validation summaries, row counts by split and modality, shard count, git revision and the DVC remote.
A record is written once: the same md5 means the same bytes, so a later identical version keeps the
first record.

Extension point (models, issue #7): add an entry to KINDS (e.g. "model": "models"), write records with
`LineageStore().write("model", run_id, record)` (a model record should name its dataset md5 so
`mmcl lineage model <id>` can follow it to the dataset record); `mmcl lineage <kind> <key>` then works
for the new kind with no CLI change. Optionally register a formatter in FORMATTERS.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmcl.data.manifest import write_json
from mmcl.errors import UserError

ENV_STORE = "MMCL_LINEAGE_DIR"
DEFAULT_STORE = "lineage"
SCHEMA_VERSION = 1
# kind -> subfolder of the store; issue #7 adds "model": "models"
KINDS: dict[str, str] = {"dataset": "datasets"}
# kind -> function(record) -> text for `mmcl lineage <kind> <key>`; kinds without one print JSON
FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {}


def record_key(key: str) -> str:
    """File stem for a key: a DVC md5 loses its ".dir" suffix; any other key must be file-name safe."""
    stem = key[:-4] if key.endswith(".dir") else key
    if not stem or any(ch in stem for ch in "/\\") or stem.startswith("."):
        raise UserError(f"invalid lineage key {key!r}")
    return stem


class LineageStore:
    """JSON lineage records by kind and key, written atomically."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or os.environ.get(ENV_STORE) or DEFAULT_STORE)

    def folder(self, kind: str) -> Path:
        if kind not in KINDS:
            raise UserError(f"unknown lineage kind {kind!r}; known: {sorted(KINDS)}")
        return self.root / KINDS[kind]

    def path(self, kind: str, key: str) -> Path:
        return self.folder(kind) / f"{record_key(key)}.json"

    def write(self, kind: str, key: str, record: dict[str, Any], *, overwrite: bool = False) -> Path:
        """Store a record; an existing record for the same key is kept unless overwrite."""
        path = self.path(kind, key)
        if path.exists() and not overwrite:
            return path
        write_json(path, {"kind": kind, "key": key, "schema": SCHEMA_VERSION, **record})
        return path

    def read(self, kind: str, key: str) -> dict[str, Any]:
        """The record for `key` (a full key, with or without ".dir", or a unique prefix)."""
        folder, stem = self.folder(kind), record_key(key)
        exact = folder / f"{stem}.json"
        if exact.is_file():
            return load_record(exact)
        matches = sorted(folder.glob(f"{stem}*.json")) if folder.is_dir() else []
        if len(matches) == 1:
            return load_record(matches[0])
        if not matches:
            raise UserError(f"no {kind} lineage record for {key!r} in {folder}")
        raise UserError(f"{key!r} matches {len(matches)} {kind} records: {[m.stem for m in matches]}")

    def scan(self, kind: str) -> tuple[list[dict[str, Any]], list[str]]:
        """(every readable record, one message per unreadable file): one bad file hides no other record."""
        folder = self.folder(kind)
        records, problems = [], []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                records.append(load_record(path))
            except UnreadableRecord as exc:
                problems.append(str(exc))
        return records, problems

    def list(self, kind: str) -> list[dict[str, Any]]:
        """Every readable record of `kind` (see scan for the unreadable ones)."""
        return self.scan(kind)[0]


class UnreadableRecord(UserError):
    """A lineage file that is not a record (truncated, not JSON, not an object with a key)."""


def load_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"not valid JSON ({exc})" if not isinstance(exc, OSError) else f"cannot be read ({exc.strerror})"
        raise UnreadableRecord(f"{path}: lineage record {problem}: restore it from git (`git checkout -- {path}`), "
                               "or delete it and rerun `mmcl data version` on that version to write it again") from exc
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        raise UnreadableRecord(f"{path}: not a lineage record (expected a JSON object with a \"key\"): restore it "
                               f"from git (`git checkout -- {path}`) or delete it")
    return record


def git_revision(cwd: str | os.PathLike = ".") -> dict[str, Any]:
    """{"rev": HEAD sha or None, "dirty": bool or None, "reason": why there is no revision (only then)} of the
    repository around cwd."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except OSError as exc:
        return {"rev": None, "dirty": None, "reason": f"git cannot run here ({exc.strerror})"}
    rev = head.stdout.strip() if head.returncode == 0 else None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    out: dict[str, Any] = {"rev": rev, "dirty": dirty}
    if rev is None:
        said = (head.stderr.strip().splitlines() or ["no commit"])[0].removeprefix("fatal: ")
        out["reason"] = f"{Path(cwd).resolve()}: {said}"
    return out


def dataset_record(md5: str, dataset_dir: str | os.PathLike, info: dict[str, Any],
                   validation: list[dict[str, Any]], *, previous_md5: str | None = None,
                   remote: str | None = None, rejected: list[dict[str, Any]] | None = None,
                   git: dict[str, Any] | None = None) -> dict[str, Any]:
    """The lineage record of one dataset version (see the module docstring for the fields)."""
    rows = {k: info.get(k) for k in ("records", "splits", "modalities", "shards")}
    totals = {k: sum(v.get(k) or 0 for v in validation) for k in ("rows", "accepted", "quarantined", "warned")}
    return {
        "md5": md5,
        "dataset_dir": str(dataset_dir),
        "previous_md5": previous_md5,
        "source_drops": [d["name"] for d in info.get("drops", [])],
        "validation": {"drops": validation, "totals": totals, "rejected_drops": rejected or []},
        "row_counts": rows,
        "git": git if git is not None else git_revision(Path(dataset_dir).resolve().parent),
        "dvc_remote": remote,
    }


def format_dataset(record: dict[str, Any]) -> str:
    counts, val = record["row_counts"], record["validation"]
    lines = [
        f"dataset {record['md5']}  ({record['dataset_dir']})",
        f"  grew from: {record.get('previous_md5') or '(first version)'}",
        f"  git: {record['git'].get('rev') or '(no commit)'}{' (dirty)' if record['git'].get('dirty') else ''}",
        f"  remote: {record.get('dvc_remote') or '(none)'}",
        f"  records: {counts['records']} in {counts['shards']} shards; splits {counts['splits']}; "
        f"modalities {counts['modalities']}",
        f"  validation: {val['totals']}",
    ]
    for drop in val["drops"]:
        lines.append(f"    {drop['drop']}: {drop['status']}, {drop['accepted']}/{drop['rows']} accepted, "
                     f"{drop['quarantined']} quarantined, failed checks {drop.get('failed_checks') or {}}")
    for drop in val["rejected_drops"]:
        lines.append(f"    {drop['drop']}: rejected: {drop['reason']}")
    return "\n".join(lines)


FORMATTERS["dataset"] = format_dataset
