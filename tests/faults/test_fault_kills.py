"""SIGKILL at every step boundary of ingest -> validate -> version -> push (issue #12), in real processes.

`mmcl data ingest`, `mmcl validate` and `mmcl data version` run as subprocesses with MMCL_FAULT_AT naming one
point (mmcl.faults); the process kills itself there. Then the same command is rerun and the invariants are
checked: the previous dataset version comes back with `dvc checkout` of its committed .dvc, every row of the
new drop is in exactly one place (none lost, none duplicated), the lineage chain is v1 -> v2 (never a
version that grew from itself), and no temporary file or folder is left anywhere.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmcl.data.shards import read_index
from mmcl.data.versioning import DvcRepo, read_dvc_md5, version_dataset
from mmcl.lineage import LineageStore
from mmcl.validate.gate import Areas, run_gate

INGEST = ("data", "ingest", "landing", "--out", "data/raw", "--rejected", "data/rejected/ingest")
VALIDATE = ("validate", "data/raw/drop-0002", "--output", "reports/r.json", "--accepted", "data/validated",
            "--quarantine", "data/quarantine", "--rejected", "data/rejected/validate", "--fail-on", "rejected", "-q")
VERSION = ("data", "version", "data/validated", "--dataset", "data/dataset", "--lineage", "lineage",
           "--rejected", "data/rejected/validate")


@pytest.fixture(scope="module")
def v1_repo(tmp_path_factory, fh) -> tuple[Path, dict]:
    """A git + DVC repository holding dataset v1 (drop-0001, committed and pushed); drop-0002 (3 good rows,
    1 truncated image) waiting in the landing zone."""
    root = tmp_path_factory.mktemp("kills") / "repo"
    root.mkdir()
    fh.git(root, "init", "-q")
    DvcRepo(root).init()
    rows, files = fh.good_rows("a", 3, seed=1)
    fh.write_drop(root / "landing", "drop-0001", rows, files)
    rows, files = fh.good_rows("b", 3, seed=2)
    rows.append({"id": "b-bad", "split": "train", "caption": "a cut picture", "image": "images/b-bad.png"})
    files["images/b-bad.png"] = fh.png_bytes(99, size=32)[:60]
    fh.write_drop(root / "landing", "drop-0002", rows, files, declare_hashes=False)
    areas = Areas(root / "data/validated", root / "data/quarantine", root / "data/rejected/validate")
    from mmcl.data.landing import ingest_drops

    ingest_drops([root / "landing" / "drop-0001"], root / "data/raw", root / "data/rejected/ingest")
    run_gate([root / "data/raw/drop-0001"], areas=areas)
    v1 = version_dataset(areas.accepted, root / "data/dataset", lineage_dir=root / "lineage", rejected_root=areas.rejected,
                         use_dvc=True, push=True)
    fh.git(root, "add", "-A")
    fh.git(root, "commit", "-q", "-m", "dataset v1")
    return root, {"md5": v1["md5"], "files": fh.snapshot(root / "data/dataset")}


@pytest.fixture(scope="module")
def validated_repo(v1_repo, tmp_path_factory) -> Path:
    """v1_repo with drop-0002 ingested and through the gate (in this process), ready to be versioned."""
    from mmcl.data.landing import ingest_drops

    src, _ = v1_repo
    root = tmp_path_factory.mktemp("validated") / "repo"
    shutil.copytree(src, root, symlinks=True)
    ingest_drops([root / "landing"], root / "data/raw", root / "data/rejected/ingest")
    run_gate([root / "data/raw/drop-0002"], areas=Areas(root / "data/validated", root / "data/quarantine",
                                                       root / "data/rejected/validate"), dataset_dir=root / "data/dataset")
    return root


def check_rows_routed_once(fh, repo: Path) -> None:
    """No row lost or duplicated: drop-0002's 3 good rows accepted, the bad one quarantined, nothing else."""
    accepted = fh.manifest_ids(repo / "data/validated/drop-0002/manifest.jsonl")
    quarantined = [r["id"] for r in json.loads((repo / "data/quarantine/drop-0002/quarantine.json").read_text())["rows"]]
    assert sorted(accepted) == ["b-0", "b-1", "b-2"] and quarantined == ["b-bad"]


def check_v1_intact(fh, repo: Path, v1: dict) -> None:
    """Right after a kill: v1's shards byte for byte, its lineage record readable, the dataset.json a reader
    sees is v1's or the complete v2's."""
    now = fh.snapshot(repo / "data/dataset")
    assert all(now.get(name) == digest for name, digest in v1["files"].items() if name.startswith("shards/"))
    assert LineageStore(repo / "lineage").read("dataset", v1["md5"])["previous_md5"] is None
    drops = [d["name"] for d in json.loads((repo / "data/dataset/dataset.json").read_text())["drops"]]
    assert drops in (["drop-0001"], ["drop-0001", "drop-0002"])


def check_versioned(fh, repo: Path, v1: dict, *, cloud: bool = True) -> None:
    check_rows_routed_once(fh, repo)
    index = [e["id"] for e in read_index(repo / "data/dataset")]
    assert sorted(index) == ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]
    # lineage: exactly v1 and v2, v2 grew from v1 (never from itself)
    v2_md5 = read_dvc_md5(repo / "data/dataset.dvc")
    records = {r["md5"]: r for r in LineageStore(repo / "lineage").list("dataset")}
    assert set(records) == {v1["md5"], v2_md5} and v2_md5 != v1["md5"]
    assert records[v2_md5]["previous_md5"] == v1["md5"] and records[v1["md5"]]["previous_md5"] is None
    assert records[v2_md5]["source_drops"] == ["drop-0001", "drop-0002"]
    assert not fh.stray_temporaries(repo), fh.stray_temporaries(repo)
    assert not (repo / "lineage/pending").exists()  # the journal is closed
    dvc = DvcRepo(repo)
    if cloud:  # v2 reached the remote
        assert dvc.run("status", "--cloud", "--json", "data/dataset.dvc").stdout.strip() in ("{}", "")
    # the previous version comes back exactly from its committed .dvc
    fh.git(repo, "checkout", "-q", "HEAD", "--", "data/dataset.dvc")
    dvc.checkout("data/dataset.dvc")
    assert fh.snapshot(repo / "data/dataset") == v1["files"]


VERSION_POINTS = ["versioning.after_journal", "shards.after_shards", "shards.after_index", "versioning.after_add",
                  "versioning.after_push", "versioning.after_lineage"]


def test_kill_at_every_versioning_point_in_turn_then_rerun(v1_repo, validated_repo, tmp_path, fh):
    """Each rerun is killed at the next point (so every point is reached, after a kill, at least once);
    v1 stays intact after every kill and the last rerun completes v2."""
    _, v1 = v1_repo
    repo = tmp_path / "repo"
    shutil.copytree(validated_repo, repo, symlinks=True)
    for point in VERSION_POINTS:
        killed = fh.mmcl(repo, *VERSION, fault=point)
        assert killed.returncode == -9, (point, killed.stdout, killed.stderr)
        check_v1_intact(fh, repo, v1)
    done = fh.mmcl(repo, *VERSION)
    assert done.returncode == 0, done.stderr
    check_versioned(fh, repo, v1)


@pytest.mark.parametrize("point", ["shards.after_index", "versioning.after_add"])
def test_one_kill_while_versioning_then_rerun(point, v1_repo, validated_repo, tmp_path, fh):
    """The two kills of the issue alone: between index.jsonl and dataset.json (versioning then refused
    forever), and after `dvc add` before the push (lineage then said the version grew from itself)."""
    _, v1 = v1_repo
    repo = tmp_path / "repo"
    shutil.copytree(validated_repo, repo, symlinks=True)
    assert fh.mmcl(repo, *VERSION, fault=point).returncode == -9
    check_v1_intact(fh, repo, v1)
    done = fh.mmcl(repo, *VERSION)
    assert done.returncode == 0, done.stderr
    check_versioned(fh, repo, v1, cloud=point == "versioning.after_add")


@pytest.mark.parametrize("point", ["landing.after_media", "landing.before_publish"])
def test_kill_while_ingesting_then_rerun(point, v1_repo, tmp_path, fh):
    src, _ = v1_repo
    repo = tmp_path / "repo"
    shutil.copytree(src, repo, symlinks=True)
    raw_v1 = fh.snapshot(repo / "data/raw/drop-0001")
    assert fh.mmcl(repo, *INGEST, fault=point).returncode == -9
    assert not (repo / "data/raw/drop-0002").exists()  # nothing half-visible
    assert fh.stray_temporaries(repo)  # the killed run's folder, until the rerun
    done = fh.mmcl(repo, *INGEST)
    assert done.returncode == 0 and "drop-0002: ingested" in done.stdout and "drop-0001: skipped" in done.stdout
    assert fh.manifest_ids(repo / "data/raw/drop-0002/manifest.jsonl") == ["b-0", "b-1", "b-2", "b-bad"]
    landing, raw = repo / "landing/drop-0002/images/b-0.png", repo / "data/raw/drop-0002/images/b-0.png"
    assert raw.read_bytes() == landing.read_bytes() and raw.stat().st_ino != landing.stat().st_ino
    assert fh.snapshot(repo / "data/raw/drop-0001") == raw_v1
    assert not fh.stray_temporaries(repo)


def test_kills_while_routing_a_drop_then_rerun(validated_repo, tmp_path, fh):
    """Killed after quarantine/ is published but before accepted/ (the drop is not done: it is routed
    again), then killed again between the two renames that replace quarantine/<drop>: the next run puts
    the old folder back, and a last rerun routes every row exactly once."""
    repo = tmp_path / "repo"
    shutil.copytree(validated_repo, repo, symlinks=True)
    shutil.rmtree(repo / "data/validated/drop-0002")
    shutil.rmtree(repo / "data/quarantine/drop-0002")
    accepted_v1 = fh.snapshot(repo / "data/validated/drop-0001")
    assert fh.mmcl(repo, *VALIDATE, fault="quarantine.before_accept").returncode == -9
    assert not (repo / "data/validated/drop-0002").exists()  # not marked done
    def quarantined_rows():
        return json.loads((repo / "data/quarantine/drop-0002/quarantine.json").read_text())["rows"]

    quarantined = quarantined_rows()
    assert fh.mmcl(repo, *VALIDATE, fault="landing.between_renames").returncode == -9
    assert not (repo / "data/quarantine/drop-0002").exists()  # cut between the renames: aside as .old-*
    done = fh.mmcl(repo, *VALIDATE)
    assert done.returncode == 0, done.stderr
    assert quarantined_rows() == quarantined  # same rows, same reasons
    check_rows_routed_once(fh, repo)
    assert fh.snapshot(repo / "data/validated/drop-0001") == accepted_v1
    assert not fh.stray_temporaries(repo)
