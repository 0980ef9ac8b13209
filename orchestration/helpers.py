"""Small helpers shared by the asset modules: code versions, asset values read from the workspace, metadata."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.resources import REPO_ROOT, MmclWorkspace


def code_version(*paths: str) -> str:
    """sha256[:12] of the named files / folders' .py files (relative to the repo): an asset's code version
    changes exactly when the mmcl code it runs (or its own module) changes, so the UI marks it stale."""
    digest = hashlib.sha256()
    for rel in paths:
        target = REPO_ROOT / rel
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for file in files:
            if file.is_file():
                digest.update(file.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]


def stored_value(workspace: MmclWorkspace, asset: str) -> dict[str, Any] | None:
    """An asset's last value in this workspace (what JsonIOManager wrote), None if never materialised.
    Used where a missing upstream is a normal state (no champion yet), not an error."""
    path = workspace.path("dagster_io", f"{asset}.json")
    return json.loads(path.read_text()) if path.is_file() else None


def scalar_metadata(values: dict[str, Any]) -> dict[str, Any]:
    """Numbers and short strings as Dagster metadata (numbers get plotted across materialisations)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, bool) or value is None:
            out[key] = dg.MetadataValue.text(str(value))
        elif isinstance(value, (int, float)):
            out[key] = dg.MetadataValue.float(float(value)) if isinstance(value, float) else dg.MetadataValue.int(value)
        elif isinstance(value, str):
            out[key] = dg.MetadataValue.path(value) if value.startswith("/") else dg.MetadataValue.text(value)
        else:
            out[key] = dg.MetadataValue.json(value)
    return out


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
