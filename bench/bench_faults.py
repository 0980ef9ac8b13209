"""Hostile data inputs, one at a time, through whatever mmcl is on PYTHONPATH; prints instance -> outcome.

Run on main's code and on a fixed branch for the before/after table of bench/RESULTS.md (issue #12):

    PYTHONPATH=. .venv/bin/python bench/bench_faults.py --work /tmp/bench-faults [--tmpfs]

Each row-level instance is one drop holding the hostile row and one good row, ingested, validated (real GX,
media check `full`) and versioned (no DVC): the outcome says what happened to the hostile row and whether
the good row was versioned. --tmpfs (root only) mounts a 64 KiB tmpfs for the disk-full probes.
Kills are measured by tests/faults/test_fault_kills.py (real subprocesses), not here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import traceback
import zlib
from pathlib import Path

import numpy as np


def png(seed: int, size: int = 8) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(seed: int, size: int = 32) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def wav(seed: int, samples: int = 1600) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.random.default_rng(seed).normal(0, 0.1, samples).astype("float32"), 16000,
                    format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def forged_wav() -> bytes:
    data = bytearray(wav(5))
    data[40:44] = (0x7FFFFFFF).to_bytes(4, "little")
    return bytes(data)


GOOD = {"id": "good", "split": "train", "caption": "a good row", "image": "images/good.png"}
# name -> (class, hostile record, files); "LINK:target" makes a symbolic link
ROWS = {
    "PNG header 60000x60000 (bomb)": (1, {"image": "i/x.png"}, {"i/x.png": bomb(60000, 60000)}),
    "PNG header 12000x12000": (1, {"image": "i/x.png"}, {"i/x.png": bomb(12000, 12000)}),
    "truncated PNG": (1, {"image": "i/x.png"}, {"i/x.png": png(3, 32)[:300]}),
    "truncated JPEG": (1, {"image": "i/x.jpg"}, {"i/x.jpg": jpeg(4)[:600]}),
    "text as .jpg": (1, {"image": "i/x.jpg"}, {"i/x.jpg": b"hello, not a JPEG\n"}),
    "0-byte PNG": (1, {"image": "i/x.png"}, {"i/x.png": b""}),
    "text as .wav": (1, {"audio": "a/x.wav"}, {"a/x.wav": b"not audio"}),
    "0-byte .mp3": (1, {"audio": "a/x.mp3"}, {"a/x.mp3": b""}),
    "truncated WAV (header says more)": (1, {"audio": "a/x.wav"}, {"a/x.wav": wav(6)[:1700]}),
    "WAV header declaring 2 GiB": (1, {"audio": "a/x.wav"}, {"a/x.wav": forged_wav()}),
    "symlink to a file outside the drop": (9, {"image": "i/x.png"}, {"i/x.png": "LINK:/etc/hostname"}),
    "symlink to a file inside the drop": (9, {"image": "i/x.png"}, {"i/x.png": "LINK:images/good.png"}),
    "dangling symlink": (9, {"image": "i/x.png"}, {"i/x.png": "LINK:nowhere.png"}),
    "../ image path": (5, {"image": "../../etc/hostname"}, {}),
    "absolute image path": (5, {"image": "/etc/hostname"}, {}),
    "id '../evil'": (5, {"id": "../evil", "caption": "x"}, {}),
    "id '/etc/passwd'": (5, {"id": "/etc/passwd", "caption": "x"}, {}),
}


def write_drop(root: Path, record: dict, files: dict) -> Path:
    drop = root / "drop-x"
    (drop / "images").mkdir(parents=True)
    (drop / "images/good.png").write_bytes(png(1))
    for relative, data in files.items():
        (drop / relative).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            os.symlink(data[5:] if data[5:].startswith("/") else drop / data[5:], drop / relative)
        else:
            (drop / relative).write_bytes(data)
    rows = [{"id": "bad", "split": "train", **record}, GOOD]
    (drop / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return drop


def short(text: str, n: int = 150) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 3] + "..."


def outcome(exc: BaseException) -> str:
    from mmcl.errors import UserError

    if isinstance(exc, UserError):
        return f"error, no traceback: {short(exc)}"
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"**traceback** {type(exc).__name__} ({Path(frame.filename).name}:{frame.lineno}): {short(exc, 90)}"


def probe_row(work: Path, record: dict, files: dict, media_check: str = "full") -> str:
    from mmcl.data.landing import ingest_drops
    from mmcl.data.shards import read_index
    from mmcl.data.versioning import version_dataset
    from mmcl.validate.gate import Areas, run_gate

    shutil.rmtree(work, ignore_errors=True)
    write_drop(work / "landing", record, files)
    areas = Areas.under(work / "data")
    try:
        ingest_drops([work / "landing"], work / "raw", work / "rejected-ingest")
        (report,) = run_gate([work / "raw"], areas=areas, media_check=media_check)
        version_dataset(areas.accepted, work / "dataset", lineage_dir=work / "lineage", use_dvc=False)
    except Exception as exc:  # noqa: BLE001 (the outcome is what is measured)
        return outcome(exc)
    ids = {e["id"] for e in read_index(work / "dataset")}
    good = "good row versioned" if "good" in ids else "**good row NOT versioned**"
    bad_id = record.get("id", "bad")
    if bad_id in ids:
        return f"**accepted silently**; {good}"
    failures = [f for f in report.failures if f.id == bad_id]
    if failures:
        f = failures[0]
        return f"quarantined, row {f.row} field {f.field} [{f.check}]: {short(f.reason)}; {good}"
    return f"{report.status}: {short(report.reason or '')}; {good}"


def main_cli(*args: str) -> tuple[int | str, str]:
    from mmcl.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(list(args))
    except SystemExit as exc:
        code = f"exit {exc.code}"
    except Exception as exc:  # noqa: BLE001
        return "traceback", outcome(exc)
    return code, short(err.getvalue())


def probes(work: Path, tmpfs: bool) -> list[tuple[int, str, str]]:
    results = [(cls, name, probe_row(work / "row", dict(rec), files)) for name, (cls, rec, files) in ROWS.items()]
    results.append((1, "PNG bomb, --media-check exists", probe_row(work / "row", {"image": "i/x.png"},
                                                                   {"i/x.png": bomb(60000, 60000)}, "exists")))
    from mmcl.data.flickr import load_image

    for name, data in (("training loader: PNG bomb", bomb(60000, 60000)), ("training loader: 12000x12000", bomb(12000, 12000))):
        path = work / "loader.png"
        path.write_bytes(data)
        try:
            load_image(path)
            results.append((1, name, "**decoded**"))
        except Exception as exc:  # noqa: BLE001
            results.append((1, name, outcome(exc)))
    results += symlinked_drops(work) + mutations(work) + metadata(work) + messages(work)
    if tmpfs:
        results += disk_full(work)
    return results


def small_dataset(work: Path):
    """One drop: row "bad" (a good JPEG + WAV: it is the shard metadata that gets tampered) and row "good"."""
    from mmcl.data.landing import ingest_drops
    from mmcl.validate.gate import Areas, run_gate

    shutil.rmtree(work, ignore_errors=True)
    write_drop(work / "landing", {"caption": "another good row", "image": "i/x.jpg", "audio": "a/x.wav"},
               {"i/x.jpg": jpeg(8), "a/x.wav": wav(8)})
    ingest_drops([work / "landing"], work / "raw", work / "rejected-ingest")
    areas = Areas.under(work / "data")
    run_gate([work / "raw"], areas=areas)
    return areas


def symlinked_drops(work: Path) -> list[tuple[int, str, str]]:
    from mmcl.data.landing import ingest_drops

    out = []
    for name, make in (("symlinked drop folder", lambda land, real: os.symlink(real, land / "drop-l")),
                       ("symlinked manifest", lambda land, real: ((land / "drop-l").mkdir(),
                                                                  os.symlink(real / "manifest.jsonl", land / "drop-l/manifest.jsonl")))):
        shutil.rmtree(work / "link", ignore_errors=True)
        real = write_drop(work / "link/elsewhere", {"caption": "x"}, {})
        (work / "link/landing").mkdir(parents=True)
        make(work / "link/landing", real)
        try:
            (result,) = ingest_drops([work / "link/landing"], work / "link/raw", work / "link/rejected")
            out.append((9, name, f"{result.status}: {short(result.reason or '')}"))
        except Exception as exc:  # noqa: BLE001
            out.append((9, name, outcome(exc)))
    return out


def mutations(work: Path) -> list[tuple[int, str, str]]:
    from mmcl.data.manifest import sha256_file
    from mmcl.data.shards import build_dataset

    out = []
    areas = small_dataset(work / "mut")
    landing, accepted = work / "mut/landing/drop-x/images/good.png", areas.accepted / "drop-x/images/good.png"
    shared = landing.stat().st_ino == accepted.stat().st_ino
    validated = sha256_file(accepted)
    with open(landing, "r+b") as handle:
        handle.write(b"\x00" * 8)
    changed = sha256_file(accepted) != validated
    out.append((2, "landing file rewritten in place after validation",
                ("**accepted copy changed too** (shared inode)" if changed else "accepted copy unchanged") +
                ("; landing and accepted share an inode" if shared else "; no shared inode")))
    with open(accepted, "r+b") as handle:  # now the accepted copy itself, after validation
        handle.write(b"\x00" * 8)
    try:
        build_dataset(areas.accepted, work / "mut/dataset")
        out.append((2, "accepted file rewritten before versioning", "**versioned under the validated sha256**"))
    except Exception as exc:  # noqa: BLE001
        out.append((2, "accepted file rewritten before versioning", outcome(exc)))
    return out


def metadata(work: Path) -> list[tuple[int, str, str]]:
    from mmcl.data.shards import build_dataset, export_flickr_layout, iter_shard, write_shard

    out = []
    for name, tamper in (("shard JSON id '../../../escaped'", {"id": "../../../escaped"}),
                         ("shard JSON audio_ext '/../../../escaped'", {"audio_ext": "/../../../escaped"})):
        areas = small_dataset(work / "meta")
        build_dataset(areas.accepted, work / "meta/dataset")
        (shard,) = (work / "meta/dataset/shards").iterdir()
        samples = list(iter_shard(shard))
        samples[0]["json"] = {**samples[0]["json"], **tamper}
        if "audio_ext" in tamper:  # a member the extension names: tar member "bad./../../../escaped"
            samples[0][tamper["audio_ext"]] = b"x"
        write_shard(shard, [{k: json.dumps(v).encode() if k == "json" else v.encode() if k == "txt" else v
                             for k, v in s.items()} for s in samples])
        try:
            export_flickr_layout(work / "meta/dataset", work / "meta/a/b/out")
            escaped = list((work / "meta").rglob("escaped*"))
            out.append((5, f"export: {name}", f"**wrote outside --out**: {escaped[0].relative_to(work)}" if escaped
                        else "exported, nothing outside --out"))
        except Exception as exc:  # noqa: BLE001
            escaped = list((work / "meta").rglob("escaped*"))
            out.append((5, f"export: {name}", outcome(exc) + ("; **wrote outside --out**" if escaped else "")))
    for check in ("image_path_inside_drop", "id_format"):
        code, err = main_cli("validate", str(work / "meta/raw/drop-x"), "--output", str(work / "r.json"),
                             "--severity", f"{check}=warning")
        out.append((5, f"--severity {check}=warning", "**accepted as a setting**" if code in (0, 1) else f"exit {code}: {err}"))
    return out


def messages(work: Path) -> list[tuple[int, str, str]]:
    out = []
    store = work / "lin"
    shutil.rmtree(store, ignore_errors=True)
    (store / "datasets").mkdir(parents=True)
    (store / "datasets/aaaa.json").write_text(json.dumps({"kind": "dataset", "key": "aaaa.dir", "md5": "aaaa.dir"}))
    for name, text in (("truncated lineage record", '{"kind": "dataset", "key": "b'), ("lineage record `[]`", "[]")):
        (store / "datasets/bbbb.json").write_text(text)
        code, err = main_cli("lineage", "list", "dataset", "--store", str(store))
        out.append((6, f"`lineage list` with a {name}", err if code == "traceback" else f"exit {code}; stderr: {err}"))
    for workers in ("-1", "0"):
        code, err = main_cli("validate", str(work / "meta/raw/drop-x"), "--output", str(work / "r.json"), "--workers", workers)
        out.append((6, f"validate --workers {workers}", err if code == "traceback" else f"exit {code}: {err}"))
    return out


def disk_full(work: Path) -> list[tuple[int, str, str]]:
    out = []
    mount = work / "tmpfs"
    for name, big_media in (("ENOSPC routing rows (validate)", True), ("ENOSPC writing the report", False)):
        mount.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
        try:
            drop = write_drop(work / "full-landing", {"audio": "a/x.wav"}, {"a/x.wav": wav(7, 48000 if big_media else 1600)})
            if not big_media:
                (mount / "filler").write_bytes(b"\x00" * (64 * 1024 - 4096))
            areas = (mount / "validated", mount / "quarantine", mount / "rejected") if big_media else \
                (work / "full/validated", work / "full/quarantine", work / "full/rejected")
            code, err = main_cli("validate", str(drop), "--output", str(mount / "sub/report.json"), "--accepted", str(areas[0]),
                                 "--quarantine", str(areas[1]), "--rejected", str(areas[2]))
            left = sorted(p.name for p in mount.rglob("*") if ".tmp" in p.name)
            out.append((6, name, (err if code == "traceback" else f"exit {code}: {err}") +
                        (f"; **left {left}**" if left else "; no temporary file left")))
        finally:
            subprocess.run(["umount", str(mount)], check=True)
            shutil.rmtree(work / "full-landing", ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/bench-faults")
    parser.add_argument("--tmpfs", action="store_true", help="mount a 64 KiB tmpfs for the disk-full probes (root)")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    import mmcl

    print(f"mmcl from {Path(mmcl.__file__).parent}", file=sys.stderr)
    print("| class | instance | outcome |\n|---|---|---|")
    for cls, name, result in probes(work, args.tmpfs):
        print(f"| {cls} | {name} | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
