"""Landing zone -> GX validation -> quarantine -> DVC version, on real Flickr8k drops with crafted defects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmcl.data.shards import read_dataset_info, read_index
from mmcl.data.versioning import DvcRepo, read_dvc_md5, version_dataset
from mmcl.errors import UserError
from mmcl.lineage import LineageStore
from mmcl.validate.gate import Areas, run_gate

PER_DROP = 16  # as the `landing` fixture (conftest.py)


def snapshot(folder: Path) -> dict[str, str]:
    from mmcl.data.manifest import sha256_file

    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def failures_of(report, record_id: str) -> list:
    return [f for f in report.failures if f.id == record_id]


@pytest.fixture
def repo(tmp_path, monkeypatch, run_git) -> Path:
    git = run_git
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    DvcRepo(root).init()  # local default remote in .dvc/local-remote
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "dvc init")
    monkeypatch.chdir(root)
    return root


def test_bad_rows_quarantined_good_rows_versioned_previous_version_intact(landing, repo, tmp_path, craft_bad_drop,
                                                                           run_git):
    git = run_git
    areas, dataset, lineage = Areas.under(repo / "data"), repo / "data" / "dataset", repo / "lineage"
    first = run_gate([landing / "drop-0001", landing / "drop-0002"], areas=areas, dataset_dir=dataset)
    assert [r.status for r in first] == ["passed", "passed"]
    v1 = version_dataset(areas.accepted, dataset, lineage_dir=lineage, rejected_root=areas.rejected)
    assert v1["row_counts"]["records"] == 2 * PER_DROP and v1["md5"] == read_dvc_md5(repo / "data/dataset.dvc")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "dataset v1")
    v1_files = snapshot(dataset)

    bad, ids = craft_bad_drop(landing, tmp_path / "incoming")
    (report,) = run_gate([bad], areas=areas, dataset_dir=dataset)
    assert report.status == "quarantined"
    expected = {  # defect -> (check, field, words of the reason)
        "corrupt_jpeg": ("image_decodes", "image", "does not decode"),
        "truncated_mp3": ("audio_decodes", "audio", "truncated"),
        "empty_caption": ("caption_not_empty", "caption", "empty"),
        "missing_split": ("record_parses", "split", "required field 'split' is missing"),
        "duplicate_id": ("id_unique", "id", "duplicate id"),
        "escaping_path": ("image_path_inside_drop", "image", "escapes"),
        "non_utf8": ("record_parses", "caption", "not valid UTF-8 (byte 0xff"),
        "leak": ("no_train_eval_leak", "image", f"versioned train record {ids['leak_donor']!r}"),
    }
    for defect, (check, field, words) in expected.items():
        found = [f for f in failures_of(report, ids[defect]) if f.check == check]
        assert found, f"{defect}: no {check} failure in {failures_of(report, ids[defect])}"
        assert found[0].field == field and words in found[0].reason, (defect, found[0])
        assert found[0].severity == "blocking" and found[0].row >= 1
    truncated = {f.check for f in failures_of(report, ids["truncated_mp3"])}
    assert "audio_hash_matches" in truncated  # the declared sha256 catches it too
    assert len([f for f in report.failures if f.check == "id_unique"]) == 2  # both holders of the id
    assert report.rows == PER_DROP and report.quarantined == 9 and report.accepted == PER_DROP - 9

    # quarantine: every failing row with its reasons and (safe) media; never a file from outside the drop
    quarantined = json.loads((areas.quarantine / "drop-0003" / "quarantine.json").read_text())
    assert len(quarantined["rows"]) == 9 and all(row["failures"] for row in quarantined["rows"])
    rows = {row["id"]: row for row in quarantined["rows"]}
    corrupt = json.loads((areas.quarantine / "drop-0003" / rows[ids["corrupt_jpeg"]]["folder"] / "record.json").read_text())
    assert corrupt["media"]["image"] == "image.jpg"
    assert (areas.quarantine / "drop-0003" / rows[ids["corrupt_jpeg"]]["folder"] / "image.jpg").is_file()
    escaping = json.loads((areas.quarantine / "drop-0003" / rows[ids["escaping_path"]]["folder"] / "record.json").read_text())
    assert escaping["media"]["image"] is None and escaping["record"]["image"].startswith("../")

    v2 = version_dataset(areas.accepted, dataset, lineage_dir=lineage, rejected_root=areas.rejected)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "dataset v2")
    assert v2["md5"] != v1["md5"] and v2["previous_md5"] == v1["md5"]
    assert v2["source_drops"] == ["drop-0001", "drop-0002", "drop-0003"]
    assert v2["row_counts"]["records"] == 2 * PER_DROP + PER_DROP - 9
    drop3 = v2["validation"]["drops"][2]
    assert drop3["quarantined"] == 9 and drop3["failed_checks"]["id_unique"] == 2
    bad_ids = {ids[k] for k in expected}
    assert not bad_ids & {e["id"] for e in read_index(dataset) if e["source_drop"] == "drop-0003"}
    # nothing already versioned changed: the earlier shards are byte-identical, v1's lineage untouched
    now = snapshot(dataset)
    assert all(now[name] == digest for name, digest in v1_files.items() if name.startswith("shards/"))
    assert LineageStore(lineage).read("dataset", v1["md5"])["row_counts"]["records"] == 2 * PER_DROP

    # the older version comes back exactly: from git + DVC cache, and from the remote alone
    git(repo, "checkout", "-q", "HEAD~1", "--", "data/dataset.dvc")
    DvcRepo(repo).checkout("data/dataset.dvc")
    assert snapshot(dataset) == v1_files
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(dataset)
    DvcRepo(repo).run("pull", "-q", "data/dataset.dvc")
    assert snapshot(dataset) == v1_files
    assert read_dataset_info(dataset)["records"] == 2 * PER_DROP


def test_unreadable_schema_rejects_the_whole_drop(tmp_path):
    landing = tmp_path / "landing"
    no_id = landing / "drop-no-id"
    no_id.mkdir(parents=True)
    (no_id / "manifest.csv").write_text("name,split,caption\na,train,A dog .\nb,test,A cat .\n", encoding="utf-8")
    (landing / "drop-no-manifest").mkdir()
    garbage = landing / "drop-garbage"
    garbage.mkdir()
    (garbage / "manifest.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    areas = Areas.under(tmp_path / "areas")
    reports = {r.drop: r for r in run_gate([landing], areas=areas)}
    assert {name: r.status for name, r in reports.items()} == {
        "drop-garbage": "rejected", "drop-no-id": "rejected", "drop-no-manifest": "rejected"}
    assert "required column 'id' is missing" in reports["drop-no-id"].reason
    assert "no manifest" in reports["drop-no-manifest"].reason
    assert "not a JSONL manifest" in reports["drop-garbage"].reason
    rejection = json.loads((areas.rejected / "drop-no-id" / "rejection.json").read_text())
    assert "'id'" in rejection["reason"] and (areas.rejected / "drop-no-id" / "drop" / "manifest.csv").is_file()
    assert not any(areas.accepted.iterdir()) and not any(areas.quarantine.iterdir())


def test_warnings_are_reported_but_rows_kept(landing, tmp_path):
    drop = tmp_path / "drop-warn"
    shutil.copytree(landing / "drop-0002", drop)
    lines = (drop / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    records[1]["caption"] = records[0]["caption"].upper().replace(" .", "!")  # near-duplicate after normalising
    records[2]["caption"] = "word " * 100                                       # 500 characters
    records[3]["licence"] = "cc-by"                                             # unknown field
    (drop / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (report,) = run_gate([drop], areas=Areas.under(tmp_path / "areas"))
    assert report.status == "passed" and report.accepted == PER_DROP and report.warned == 3
    checks = {(w.id, w.check) for w in report.warnings}
    assert {(records[1]["id"], "caption_not_near_duplicate"), (records[2]["id"], "caption_length"),
            (records[3]["id"], "known_fields_only")} <= checks
    assert next(w for w in report.warnings if w.check == "known_fields_only").field == "licence"
    # the same drop with the near-duplicate check made blocking: that row is now quarantined
    (strict,) = run_gate([drop], areas=Areas.under(tmp_path / "strict"),
                         severities={"caption_not_near_duplicate": "blocking"})
    assert strict.status == "quarantined" and [f.id for f in strict.failures] == [records[1]["id"]]
    with pytest.raises(UserError, match="unknown check 'no_such_check'"):
        run_gate([drop], severities={"no_such_check": "warning"})
