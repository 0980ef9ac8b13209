"""A full disk (ENOSPC injected into os.write, which every mmcl file write goes through) in validate and
version: a clear message, exit 2, nothing half-written, no temporary file left, the earlier state intact,
and the same command completes once there is space again (issue #12)."""

from __future__ import annotations

import errno
import os

import pytest

from mmcl.cli import main
from mmcl.data.shards import read_index
from mmcl.validate.gate import Areas, run_gate
from mmcl.validate.runner import gx_runner

FULL = "the disk is full (ENOSPC); nothing was written there (any earlier version is unchanged)"


def fill_disk(monkeypatch, when=lambda data: True):
    real = os.write

    def write(fd, data):
        if when(bytes(data)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.fixture
def drop(fh, tmp_path):
    rows, files = fh.good_rows("d", 3, seed=21)
    gx_runner()  # built before the disk fills: GX's own start-up is not what is tested
    return fh.write_drop(tmp_path / "landing", "drop-d", rows, files)


def validate_args(tmp_path, drop):
    return ["validate", str(drop), "--output", str(tmp_path / "report.json"), "--accepted", str(tmp_path / "validated"),
            "--quarantine", str(tmp_path / "quarantine"), "--rejected", str(tmp_path / "rejected"), "-q"]


def test_disk_full_while_routing_rows(drop, tmp_path, monkeypatch, capsys, fh):
    fill_disk(monkeypatch)
    assert main(validate_args(tmp_path, drop)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmcl validate: error: cannot write {tmp_path / 'validated'}/") and FULL in err
    assert not any((tmp_path / "validated").iterdir()) and not any((tmp_path / "quarantine").iterdir())
    assert not (tmp_path / "report.json").exists() and not fh.stray_temporaries(tmp_path)
    monkeypatch.undo()
    assert main(validate_args(tmp_path, drop)) == 0
    assert fh.manifest_ids(tmp_path / "validated/drop-d/manifest.jsonl") == ["d-0", "d-1", "d-2"]


def test_disk_full_while_writing_the_report(drop, tmp_path, monkeypatch, capsys, fh):
    fill_disk(monkeypatch, when=lambda data: b'"summary"' in data)
    assert main(validate_args(tmp_path, drop)) == 2
    assert f"mmcl validate: error: cannot write {tmp_path / 'report.json'}: {FULL}" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists() and not fh.stray_temporaries(tmp_path)
    assert fh.manifest_ids(tmp_path / "validated/drop-d/manifest.jsonl") == ["d-0", "d-1", "d-2"]  # routed whole


def test_disk_full_while_versioning_keeps_the_previous_version(drop, tmp_path, monkeypatch, capsys, fh):
    areas = Areas(tmp_path / "validated", tmp_path / "quarantine", tmp_path / "rejected")
    run_gate([drop], areas=areas)
    args = ["data", "version", str(areas.accepted), "--dataset", str(tmp_path / "dataset"), "--no-dvc",
            "--lineage", str(tmp_path / "lineage")]
    assert main(args) == 0
    before = fh.snapshot(tmp_path / "dataset")
    rows, files = fh.good_rows("e", 2, seed=22)
    run_gate([fh.write_drop(tmp_path / "landing", "drop-e", rows, files)], areas=areas)
    fill_disk(monkeypatch, when=lambda data: b'"previous_md5"' not in data)  # the journal fits, the shards not
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmcl data: error: cannot write {tmp_path / 'dataset/shards'}/") and FULL in err
    assert fh.snapshot(tmp_path / "dataset") == before and not fh.stray_temporaries(tmp_path)
    monkeypatch.undo()
    assert main(args) == 0
    assert sorted(e["id"] for e in read_index(tmp_path / "dataset")) == ["d-0", "d-1", "d-2", "e-0", "e-1"]
