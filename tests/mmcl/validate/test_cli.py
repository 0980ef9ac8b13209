"""`mmcl data ingest` and `mmcl validate` as a user runs them: exit status, report rows, routed areas."""

from __future__ import annotations

import json
import shutil

from mmcl.cli import main


def test_validate_exit_status_and_report(landing, tmp_path, craft_bad_drop, capsys):
    bad, ids = craft_bad_drop(landing, tmp_path / "incoming")
    report = tmp_path / "report.json"
    assert main(["validate", str(landing / "drop-0001"), "--output", str(report)]) == 0
    assert json.loads(report.read_text())["summary"]["blocking_failed"] is False

    assert main(["validate", str(bad), "--output", str(report)]) == 1
    document = json.loads(report.read_text())
    (drop,) = document["drops"]
    assert drop["status"] == "quarantined" and drop["manifest"].endswith("manifest.jsonl")
    dup = [f for f in drop["failures"] if f["check"] == "id_unique"]
    assert {f["id"] for f in dup} == {ids["duplicate_id"]} and len({f["row"] for f in dup}) == 2
    assert all({"row", "id", "field", "reason", "check", "severity"} <= set(f) for f in drop["failures"])
    assert next(c for c in drop["checks"] if c["name"] == "id_unique")["expectation"] == \
        "expect_column_values_to_be_unique"
    out = capsys.readouterr().out
    assert f"id={ids['empty_caption']!r} caption [caption_not_empty, blocking]: caption is empty" in out
    assert not (tmp_path / "incoming" / "validated").exists()  # report-only: nothing routed

    assert main(["validate", str(bad), "--output", str(report), "--fail-on", "rejected"]) == 0
    assert main(["validate", str(bad), "--output", str(report), "--accepted", str(tmp_path / "a")]) == 2


def test_ingest_normalises_and_validation_keeps_the_original_line(landing, tmp_path):
    incoming = tmp_path / "landing"
    drop = incoming / "drop-csv"
    drop.mkdir(parents=True)
    shutil.copy(landing / "drop-0001" / "images" / sorted((landing / "drop-0001" / "images").iterdir())[0].name,
                drop / "a.jpg")
    (drop / "manifest.csv").write_bytes(b"id,split,caption,image\nok1,train,A dog .,a.jpg\n"
                                        b"bad2,train,caf\xe9,a.jpg\n")
    raw, areas = tmp_path / "raw", tmp_path / "areas"
    assert main(["data", "ingest", str(incoming), "--out", str(raw), "--rejected", str(areas / "rejected")]) == 0
    canonical = [json.loads(line) for line in (raw / "drop-csv" / "manifest.jsonl").read_text().splitlines()]
    assert [r["_row"] for r in canonical] == [2, 3] and len(canonical[0]["image_sha256"]) == 64
    report = tmp_path / "report.json"
    rc = main(["validate", str(raw), "--output", str(report), "--accepted", str(areas / "validated"),
               "--quarantine", str(areas / "quarantine"), "--rejected", str(areas / "rejected")])
    assert rc == 1
    (failure,) = json.loads(report.read_text())["drops"][0]["failures"]
    assert (failure["row"], failure["id"], failure["field"]) == (3, "bad2", "caption")
    assert "not valid UTF-8 (byte 0xe9" in failure["reason"]
    accepted = (areas / "validated" / "drop-csv" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in accepted] == ["ok1"]
    assert (areas / "validated" / "drop-csv" / "a.jpg").is_file()
    assert (areas / "quarantine" / "drop-csv" / "rows" / "000003-bad2" / "image.jpg").is_file()
