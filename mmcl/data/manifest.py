"""Drop manifests: heterogeneous multimodal records, read from CSV or JSONL, written as canonical JSONL.

A *drop* is a folder holding one manifest and the media it names:

    drop-0001/
      manifest.jsonl          (or manifest.csv; exactly one of the two)
      drop.json               optional metadata: {"name", "kind", "params", ...}
      images/<id>.jpg
      audio/<id>.mp3

One manifest record is one sample; a record may miss modalities (no image, no audio, no caption), but it
must have at least one. Fields (RECORD_FIELDS):

    id            str, required, [A-Za-z0-9][A-Za-z0-9_-]*: also the webdataset key of the sample
    split         str, required: train | dev | test | none
    caption       str or null: the primary caption (for Flickr, the one the audio speaks)
    captions      list[str] or null: every caption of the sample (the primary one first)
    image, audio  str or null: media paths relative to the drop folder (must stay inside it)
    transcript    str or null: what the audio says
    group         str or null: samples of one group share a positive (Flickr: the image id)
    features      {name: number} or null: optional tabular features
    image_sha256, audio_sha256   str or null: declared content hashes (checked against the files)
    source_drop   str: the drop the record arrived in (filled from the folder name when absent)

JSONL is the canonical form (lists and dicts are native, a missing key is a missing value). CSV is accepted
for hand-made drops: `captions` and `features` cells hold JSON, and an empty cell is a missing value (so in
CSV an empty caption cannot be told from no caption). Reading never raises for one bad row: the row keeps
its problems in `ManifestRow.errors` and validation quarantines it. A manifest that cannot be read as a
table at all (missing, both formats, no header, no record) raises DataError and the whole drop is
rejected; so is a drop whose columns fail the schema suite (mmcl.validate.suites: a required column
absent from every row).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcl.errors import DataError, UserError

MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")
REQUIRED_FIELDS = ("id", "split")
TEXT_FIELDS = ("id", "split", "caption", "image", "audio", "transcript", "group",
               "image_sha256", "audio_sha256", "source_drop")
RECORD_FIELDS = (*TEXT_FIELDS, "captions", "features")
MEDIA_FIELDS = ("image", "audio")
SPLITS = ("train", "dev", "test", "none")
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$"
DROP_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
# canonical JSONL keeps what ingestion learnt about a row under reserved keys
ROW_KEY, ERRORS_KEY, WARNINGS_KEY = "_row", "_errors", "_warnings"


@dataclass
class ManifestRow:
    """One record as read: `row` is its 1-based line in the manifest file (CSV header is line 1)."""

    row: int
    fields: dict[str, Any]
    errors: list[tuple[str, str]] = field(default_factory=list)  # (field, reason) found while parsing: blocking
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (field, reason): reported, row kept

    @property
    def id(self) -> str | None:
        value = self.fields.get("id")
        return value if isinstance(value, str) else None


@dataclass
class Drop:
    name: str
    root: Path
    manifest_path: Path
    rows: list[ManifestRow]
    meta: dict[str, Any]


def find_manifest(drop_dir: str | os.PathLike) -> Path:
    root = Path(drop_dir)
    if not root.is_dir():
        raise DataError(root, "drop folder does not exist")
    links = [root / name for name in MANIFEST_NAMES if (root / name).is_symlink()]
    if links:
        raise DataError(links[0], f"the manifest is a symbolic link (-> {os.readlink(links[0])}): refused, put the "
                        "file itself in the drop")
    found = [root / name for name in MANIFEST_NAMES if (root / name).is_file()]
    if not found:
        raise DataError(root, f"no manifest: expected one of {', '.join(MANIFEST_NAMES)}")
    if len(found) > 1:
        raise DataError(root, "two manifests (manifest.jsonl and manifest.csv): keep exactly one")
    return found[0]


def read_drop(drop_dir: str | os.PathLike) -> Drop:
    """Read a drop's manifest (and drop.json). Raises DataError when the manifest is unreadable as a whole."""
    if Path(drop_dir).is_symlink():
        raise DataError(drop_dir, f"the drop folder is a symbolic link (-> {os.readlink(drop_dir)}): refused, put "
                        "the drop itself in the landing zone")
    root = Path(drop_dir).resolve()
    if not DROP_NAME_PATTERN.match(root.name):
        raise DataError(root, f"drop folder name {root.name!r} must match {DROP_NAME_PATTERN.pattern}")
    manifest = find_manifest(root)
    raw = manifest.read_bytes()
    if not raw.strip():
        raise DataError(manifest, "manifest is empty")
    # surrogateescape keeps undecodable bytes visible per row instead of failing the whole file
    text = raw.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    rows = _read_csv(manifest, text) if manifest.suffix == ".csv" else _read_jsonl(manifest, text)
    _check_columns(manifest, rows)
    for row in rows:
        _normalise(row, default_drop=root.name)
    return Drop(name=root.name, root=root, manifest_path=manifest, rows=rows, meta=_read_meta(root))


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / "drop.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"drop metadata is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise DataError(path, "drop metadata must be a JSON object")
    return meta


def _read_jsonl(path: Path, text: str) -> list[ManifestRow]:
    rows: list[ManifestRow] = []
    parsed = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(ManifestRow(line_no, {}, [("record", f"not valid JSON: {exc.msg} at column {exc.colno}")]))
            continue
        if not isinstance(value, dict):
            rows.append(ManifestRow(line_no, {}, [("record", f"expected a JSON object, got {type(value).__name__}")]))
            continue
        parsed += 1
        row_no = value.pop(ROW_KEY, line_no)
        errors = [tuple(e) for e in value.pop(ERRORS_KEY, [])]
        warnings = [tuple(w) for w in value.pop(WARNINGS_KEY, [])]
        rows.append(ManifestRow(int(row_no), value, errors, warnings))
    if parsed == 0:
        raise DataError(path, "no line of the manifest is a JSON object: not a JSONL manifest")
    return rows


def _read_csv(path: Path, text: str) -> list[ManifestRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise DataError(path, f"cannot read the CSV header: {exc}", row=1) from exc
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise DataError(path, f"duplicate column names in the header: {header}", row=1)
    rows: list[ManifestRow] = []
    try:
        for cells in reader:
            line_no = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            errors: list[tuple[str, str]] = []
            if len(cells) != len(header):
                missing = header[len(cells):] if len(cells) < len(header) else []
                reason = f"{len(cells)} cells for {len(header)} columns"
                errors.append((missing[0] if missing else "record", reason + (f" (missing {missing})" if missing else "")))
            values: dict[str, Any] = {}
            for name, cell in zip(header, cells, strict=False):
                values[name] = cell if cell != "" else None
                if name in ("captions", "features") and values[name] is not None:
                    try:
                        values[name] = json.loads(values[name])
                    except json.JSONDecodeError as exc:
                        errors.append((name, f"cell is not valid JSON: {exc.msg}"))
                        values[name] = None
            rows.append(ManifestRow(line_no, values, errors))
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV: {exc}", row=reader.line_num) from exc
    return rows


def _check_columns(path: Path, rows: list[ManifestRow]) -> None:
    """Only "no records at all" is fatal here; missing required columns are judged by the schema suite."""
    if not rows:
        raise DataError(path, "manifest has no records")


def _normalise(row: ManifestRow, *, default_drop: str) -> None:
    """Type-check fields in place; every problem becomes a (field, reason) error on the row."""
    values = row.fields
    if any(f == "record" for f, _ in row.errors):  # nothing parsed: one clear error, not one per field
        values["source_drop"] = default_drop
        return
    for name in REQUIRED_FIELDS:
        if values.get(name) is None and not any(f == name for f, _ in row.errors):
            row.errors.append((name, f"required field {name!r} is missing"))
    for name in TEXT_FIELDS:
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            row.errors.append((name, f"expected a string, got {type(value).__name__} {value!r}"))
            values[name] = str(value)
        if isinstance(values.get(name), str) and _has_undecodable(values[name]):
            values[name], reason = _repair_text(values[name])
            row.errors.append((name, reason))
    _normalise_captions(row)
    _normalise_features(row)
    values.setdefault("source_drop", default_drop)
    if values.get("source_drop") is None:
        values["source_drop"] = default_drop
    unknown = sorted(k for k in values if k not in RECORD_FIELDS)
    for name in unknown:  # kept out of the dataset; noted so a typo in a column name is not silent
        values.pop(name)
        row.warnings.append((name, f"unknown field {name!r} (known: {', '.join(RECORD_FIELDS)})"))


def _normalise_captions(row: ManifestRow) -> None:
    captions = row.fields.get("captions")
    if captions is None:
        return
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        row.errors.append(("captions", "expected a list of strings"))
        row.fields["captions"] = None
        return
    for i, caption in enumerate(captions):
        if _has_undecodable(caption):
            captions[i], reason = _repair_text(caption)
            row.errors.append(("captions", reason))


def _normalise_features(row: ManifestRow) -> None:
    features = row.fields.get("features")
    if features is None:
        return
    ok = isinstance(features, dict) and all(
        isinstance(k, str) and not _has_undecodable(k) and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for k, v in features.items()
    )
    if not ok:
        row.errors.append(("features", "expected an object of finite numbers {name: value}"))
        row.fields["features"] = None


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape made of a byte that is not UTF-8


def _has_undecodable(text: str) -> bool:
    return _ESCAPED_BYTE.search(text) is not None


def _repair_text(text: str) -> tuple[str, str]:
    """Replace escaped bytes by U+FFFD and say which byte was not UTF-8."""
    position = _ESCAPED_BYTE.search(text).start()
    byte = ord(text[position]) - 0xDC00
    repaired = text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return repaired, f"text is not valid UTF-8 (byte 0x{byte:02x} at character {position})"


def record_to_json(row: ManifestRow, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The canonical JSONL object of a row (known fields only, row number and parse errors kept)."""
    out: dict[str, Any] = {name: row.fields.get(name) for name in RECORD_FIELDS if row.fields.get(name) is not None}
    out.update(extra or {})
    out[ROW_KEY] = row.row
    if row.errors:
        out[ERRORS_KEY] = [list(e) for e in row.errors]
    if row.warnings:
        out[WARNINGS_KEY] = [list(w) for w in row.warnings]
    return out


def write_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Write records as JSONL atomically (tmp file + os.replace): readers never see half a manifest."""
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    atomic_write_text(path, lines)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


TMP_PATTERN = re.compile(r"^\.(tmp|old)-.+-p(\d+)-[0-9a-f]{8}$")  # tmp_name's names; group 2: the writer's pid


def tmp_name(name: str, kind: str = "tmp") -> str:
    """A hidden sibling name unique to this process and call: `.tmp-<name>-p<pid>-<8 hex>`. The pid lets a
    later run tell a leftover of a killed writer (remove_stale) from a live writer's work in progress."""
    return f".{kind}-{name}-p{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(parent: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in `parent` (live writers' are
    kept). A `.old-<name>` whose `<name>` is missing is the previous copy of a folder replaced by
    publish_dir when the kill fell between its two renames: it is put back, not deleted."""
    import shutil

    folder, removed = Path(parent), []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        match = TMP_PATTERN.match(entry.name)
        if match is None or _pid_alive(int(match.group(2))):
            continue
        original = folder / entry.name[len(".old-"):entry.name.rindex("-p")]
        if match.group(1) == "old" and not original.exists():
            os.replace(entry, original)
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry)
    return removed


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_failed(target: Path, tmp: Path, exc: OSError) -> UserError:
    """Remove the partial temporary file; the error says what happened and that `target` is unchanged."""
    with contextlib.suppress(OSError):
        tmp.unlink()
    what = "the disk is full (ENOSPC)" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return UserError(f"cannot write {target}: {what}; nothing was written there (any earlier version is "
                     "unchanged): free space or fix the folder and rerun")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a unique temporary sibling (fsync + os.replace): readers see the old
    file or the new one, never half of it. A failed write (ENOSPC, EIO, ...) leaves no temporary file and
    raises UserError."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(tmp_name(target.name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        raise _write_failed(target, tmp, exc) from exc


def copy_file(source: str | os.PathLike, path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Copy `source` to `path` atomically, as a new file (never a hard link: what is stored cannot change
    when the source does); returns the sha256 of the bytes written, so the caller can compare it with
    the hash it validated."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(tmp_name(target.name))
    digest = hashlib.sha256()
    try:
        handle = open(source, "rb")  # noqa: SIM115 (closed below; a read error is not a write error)
    except OSError as exc:
        raise DataError(source, f"cannot read: {exc.strerror or exc}") from exc
    with handle:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                while block := handle.read(chunk):
                    digest.update(block)
                    _write_all(fd, block)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            raise _write_failed(target, tmp, exc) from exc
    return digest.hexdigest()


def write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
