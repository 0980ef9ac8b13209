"""Dataset lineage records: written by `mmcl data version`, read by `mmcl lineage dataset <md5>`."""

from __future__ import annotations

import json
import subprocess

import pytest

from mmcl import lineage
from mmcl.cli import main
from mmcl.data.drops import simulate_drops
from mmcl.data.versioning import dir_md5, version_dataset
from mmcl.errors import UserError
from mmcl.lineage import LineageStore
from mmcl.validate.gate import Areas, run_gate


@pytest.fixture(scope="module")
def versioned(tmp_path_factory):
    """Two real drops validated and versioned without DVC (as the dvc.yaml `version` stage does)."""
    root = tmp_path_factory.mktemp("lineage")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    simulate_drops(root / "landing", n_drops=2, per_drop=10, seed=11)
    areas = Areas.under(root / "data")
    run_gate([root / "landing"], areas=areas)
    record = version_dataset(areas.accepted, root / "data" / "dataset", lineage_dir=root / "lineage",
                             use_dvc=False, rejected_root=areas.rejected)
    return root, record


def test_record_holds_md5_drops_validation_counts_and_git(versioned):
    root, record = versioned
    assert record["md5"] == dir_md5(root / "data" / "dataset") and record["md5"].endswith(".dir")
    assert record["source_drops"] == ["drop-0001", "drop-0002"]
    assert record["row_counts"]["records"] == 20 and sum(record["row_counts"]["splits"].values()) == 20
    assert record["row_counts"]["modalities"] == {"audio": 20, "caption": 20, "image": 20}
    assert [d["status"] for d in record["validation"]["drops"]] == ["passed", "passed"]
    assert record["validation"]["totals"]["accepted"] == 20
    assert record["git"]["rev"] is None and record["git"]["dirty"] is False  # a repository without commits
    assert "HEAD" in record["git"]["reason"]  # and why there is no revision
    stored = json.loads((root / "lineage" / "datasets" / f"{record['md5'][:-4]}.json").read_text())
    assert stored["md5"] == record["md5"] and stored["kind"] == "dataset"


def test_cli_prints_by_prefix_and_as_json(versioned, capsys):
    root, record = versioned
    store = str(root / "lineage")
    assert main(["lineage", "dataset", record["md5"][:8], "--store", store]) == 0
    out = capsys.readouterr().out
    assert f"dataset {record['md5']}" in out and "drop-0001: passed, 10/10 accepted" in out
    assert main(["lineage", "dataset", record["md5"], "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["row_counts"]["records"] == 20
    assert main(["lineage", "list", "dataset", "--store", store]) == 0
    assert capsys.readouterr().out.split() == [record["md5"]]
    assert main(["lineage", "dataset", "ffff0000", "--store", store]) == 2
    assert "no dataset lineage record for 'ffff0000'" in capsys.readouterr().err


def test_records_are_written_once_and_kinds_extend(tmp_path, monkeypatch, capsys):
    store = LineageStore(tmp_path)
    store.write("dataset", "abc123.dir", {"md5": "abc123.dir", "note": "first"})
    store.write("dataset", "abc123.dir", {"md5": "abc123.dir", "note": "second"})
    assert store.read("dataset", "abc1")["note"] == "first"
    store.write("dataset", "abd999.dir", {"md5": "abd999.dir"})
    with pytest.raises(UserError, match="matches 2"):
        store.read("dataset", "ab")
    with pytest.raises(UserError, match="unknown lineage kind"):
        store.write("experiment", "run-1", {})
    monkeypatch.setitem(lineage.KINDS, "experiment", "experiments")  # the extension point ("model" uses it)
    store.write("experiment", "run-1", {"dataset_md5": "abc123.dir"})
    assert (tmp_path / "experiments" / "run-1.json").is_file()
    assert main(["lineage", "experiment", "run-1", "--store", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["dataset_md5"] == "abc123.dir"
    with pytest.raises(UserError, match="invalid lineage key"):
        store.read("dataset", "../etc")
