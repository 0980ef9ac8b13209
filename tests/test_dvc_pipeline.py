"""The project's dvc.yaml, reproduced in a fresh git + DVC repository: stages run, `dvc status` is clean,
and checking out an older version restores its exact files.

Only ingest -> validate -> version run here (train/evaluate need the training stack; `dvc repro` of those
is exercised by the orchestration demo). The stage commands are the project's own, unchanged; only the
size parameters shrink.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmcl.data.manifest import sha256_file
from mmcl.data.versioning import dir_md5

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "data/embedded/dataset"


def sh(repo: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def dvc(repo: Path, *args: str) -> str:
    return sh(repo, sys.executable, "-m", "dvc", *args)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def lock_md5(repo: Path, stage: str, path: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(out["md5"] for out in lock["stages"][stage]["outs"] if out["path"] == path)


def set_params(repo: Path, **ingest) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ingest"].update(ingest)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.slow
def test_dvc_repro_status_and_checkout_of_an_older_version(tmp_path):
    repo = tmp_path / "clone"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(PROJECT / name, repo / name)
    sh(repo, "git", "init", "-q")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.check_update", "false")
    set_params(repo, n_drops=2, per_drop=12)

    dvc(repo, "repro", "version")
    v1 = lock_md5(repo, "version", DATASET)
    assert v1 == dir_md5(repo / DATASET)  # mmcl's md5 is DVC's md5
    record = json.loads((repo / "lineage" / "datasets" / f"{v1[:-4]}.json").read_text())
    assert record["md5"] == v1 and record["row_counts"]["records"] == 24
    assert record["source_drops"] == ["drop-0001", "drop-0002"]
    report = json.loads((repo / "data/embedded/reports/validation.json").read_text())
    assert report["summary"]["accepted"] == 24 and report["summary"]["rejected"] == 0
    assert json.loads(dvc(repo, "status", "version", "--json")) == {}
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "v1")
    v1_files = snapshot(repo / DATASET)

    set_params(repo, n_drops=3)  # a third drop lands
    dvc(repo, "repro", "version")
    v2 = lock_md5(repo, "version", DATASET)
    assert v2 != v1 and json.loads(dvc(repo, "status", "version", "--json")) == {}
    v2_files = snapshot(repo / DATASET)
    assert {k: v for k, v in v2_files.items() if "drop-0003" not in k and k.startswith("shards/")} == \
        {k: v for k, v in v1_files.items() if k.startswith("shards/")}  # earlier shards byte-identical
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "v2")

    sh(repo, "git", "checkout", "-q", "HEAD~1")
    dvc(repo, "checkout", "-q", "--force", "--with-deps", "version")
    assert snapshot(repo / DATASET) == v1_files and dir_md5(repo / DATASET) == v1
    assert json.loads(dvc(repo, "status", "version", "--json")) == {}
    sh(repo, "git", "checkout", "-q", "-")
    dvc(repo, "checkout", "-q", "--force", "--with-deps", "version")
    assert snapshot(repo / DATASET) == v2_files
