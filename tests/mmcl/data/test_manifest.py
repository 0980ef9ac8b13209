"""Manifest reading: heterogeneous records, row-level problems kept per row, unreadable drops refused."""

from __future__ import annotations

import json

import pytest

from mmcl.data.manifest import read_drop, record_to_json, write_jsonl
from mmcl.errors import DataError


def make_drop(tmp_path, name: str, manifest: str, content: bytes):
    drop = tmp_path / name
    drop.mkdir()
    (drop / manifest).write_bytes(content)
    return drop


def test_jsonl_records_may_miss_modalities_and_keep_line_numbers(tmp_path):
    lines = [
        {"id": "a1", "split": "train", "caption": "A dog runs .", "image": "images/a1.jpg",
         "features": {"width": 200, "height": 150.5}},
        {"id": "b2", "split": "test", "audio": "audio/b2.mp3"},
        {"id": "c3", "split": "dev", "caption": "Only text", "source_drop": "elsewhere"},
    ]
    drop = make_drop(tmp_path, "drop-1", "manifest.jsonl",
                     ("\n".join(json.dumps(r) for r in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n").encode())
    parsed = read_drop(drop)
    assert [r.row for r in parsed.rows] == [1, 2, 4]  # blank line 3 skipped, numbering kept
    assert all(not r.errors for r in parsed.rows)
    assert parsed.rows[1].fields.get("caption") is None and parsed.rows[1].fields["audio"] == "audio/b2.mp3"
    assert parsed.rows[0].fields["source_drop"] == "drop-1" and parsed.rows[2].fields["source_drop"] == "elsewhere"
    assert parsed.rows[0].fields["features"] == {"width": 200, "height": 150.5}


def test_row_problems_are_kept_per_row_with_field_and_reason(tmp_path):
    good = json.dumps({"id": "ok", "split": "train", "caption": "fine"}).encode()
    bad_utf8 = b'{"id": "u", "split": "train", "caption": "caf\xe9 au lait"}'
    lines = [good, bad_utf8, b'{"id": "j", "split": ', json.dumps([1, 2]).encode(),
             json.dumps({"id": 7, "split": "train", "features": {"x": "high"}, "colour": "red"}).encode(),
             json.dumps({"caption": "no id nor split", "id": None, "split": None}).encode()]
    parsed = read_drop(make_drop(tmp_path, "drop-2", "manifest.jsonl", b"\n".join(lines)))
    errors = {r.row: r.errors for r in parsed.rows}
    assert errors[1] == []
    assert errors[2] == [("caption", "text is not valid UTF-8 (byte 0xe9 at character 3)")]
    assert parsed.rows[1].fields["caption"] == "caf\ufffd au lait"
    assert errors[3][0][0] == "record" and "not valid JSON" in errors[3][0][1]
    assert errors[4] == [("record", "expected a JSON object, got list")]
    assert ("id", "expected a string, got int 7") in errors[5]
    assert ("features", "expected an object of finite numbers {name: value}") in errors[5]
    assert parsed.rows[4].warnings[0][0] == "colour"
    assert {f for f, _ in errors[6]} == {"id", "split"}


def test_csv_manifest_with_json_cells_and_short_rows(tmp_path):
    content = (
        b"id,split,caption,captions,image,features\n"
        b'x1,train,A dog .,"[""A dog ."", ""A brown dog .""]",images/x1.jpg,"{""w"": 3}"\n'
        b"x2,test,,,images/x2.jpg,\n"
        b"x3,dev\n"
    )
    parsed = read_drop(make_drop(tmp_path, "drop-csv", "manifest.csv", content))
    first, second, third = parsed.rows
    assert first.row == 2 and first.fields["captions"] == ["A dog .", "A brown dog ."]
    assert first.fields["features"] == {"w": 3} and not first.errors
    assert second.fields["caption"] is None  # empty cell = no caption (documented CSV limitation)
    assert third.row == 4 and third.errors[0][0] == "caption" and "missing" in third.errors[0][1]


@pytest.mark.parametrize("setup, words", [
    (lambda d: None, "no manifest"),
    (lambda d: [(d / "manifest.csv").write_text("id,split\n"), (d / "manifest.jsonl").write_text("{}\n")], "two manifests"),
    (lambda d: (d / "manifest.jsonl").write_text("  \n"), "manifest is empty"),
    (lambda d: (d / "manifest.jsonl").write_text("not json\n[1]\n"), "not a JSONL manifest"),
    (lambda d: (d / "manifest.csv").write_text("id,split\n"), "no records"),
    (lambda d: (d / "manifest.csv").write_text("id,id\na,b\n"), "duplicate column names"),
])
def test_unreadable_manifests_raise_naming_the_file(tmp_path, setup, words):
    drop = tmp_path / "drop-x"
    drop.mkdir()
    setup(drop)
    with pytest.raises(DataError) as caught:
        read_drop(drop)
    assert words in str(caught.value) and "drop-x" in str(caught.value)


def test_canonical_jsonl_round_trip_keeps_rows_errors_and_warnings(tmp_path):
    source = make_drop(tmp_path, "drop-src", "manifest.jsonl",
                       b'{"id": "a", "split": "train", "caption": "x\xff", "extra": 1}\n')
    (row,) = read_drop(source).rows
    target = tmp_path / "drop-canon"
    write_jsonl(target / "manifest.jsonl", [record_to_json(row, {"image_sha256": None})])
    assert [p.name for p in target.iterdir()] == ["manifest.jsonl"]  # no temporary file left behind
    (again,) = read_drop(target).rows
    assert again.row == row.row and again.errors == row.errors and again.warnings == row.warnings
    assert again.fields["caption"] == "x\ufffd"
