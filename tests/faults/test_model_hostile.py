"""Hostile inputs on the model side (issue #12, classes 4, 6, 7, 9): each instance made here, each asserting the
exact message a user sees, and that nothing stored is lost or written outside its place.

The `mmcl` command runs in-process through mmcl.cli.main (the same code path as the console script) where
its output is what is checked, and as a real subprocess where the point is that no traceback escapes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmcl.cli import main
from mmcl.config import load_config
from mmcl.errors import UserError
from mmcl.registry_models import ModelRegistry
from mmcl.train.checkpoint import load_model

STS = "sts sets=stsb max_pairs=None"
RET = "retrieval test"
TINY = "configs/tiny.yaml"
SAFE_ID = ("1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit (it names a folder inside "
           "the model store)")


def _run(tmp_path: Path, name: str, weights: bytes) -> Path:
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(weights)  # the registry links and hashes files; it never loads them
    (run / "config.yaml").write_text("name: x\n")
    return run


def _store_with_champion(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "models")
    registry.register("a", _run(tmp_path, "a", b"champion weights"))
    registry.record_metric("a", "sts_avg", 70.0, STS)
    registry.record_metric("a", "retrieval_rsum", 200.0, RET)
    registry.promote("a")
    return registry


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _temporaries(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if "tmp" in p.name]


# ---- class 4: the registry cannot be subverted

def test_registering_an_existing_id_never_replaces_its_weights(tmp_path, capsys):
    registry = _store_with_champion(tmp_path)
    store = registry.root
    before = registry.file.read_bytes()
    other = _run(tmp_path, "other", b"other weights")
    assert main(["models", "--store", str(store), "register", str(other), "--id", "a"]) == 2
    assert capsys.readouterr().err == (
        f"mmcl models: error: model id 'a' is already registered with other weights ({store}/a/model.pt: sha256 "
        f"{_sha(b'champion weights')}, {other}/model.pt: sha256 {_sha(b'other weights')}); registered weights are "
        "never replaced: register "
        f"this run under another id (`mmcl models register {other} --id <new id>`)\n")
    assert (store / "a" / "model.pt").read_bytes() == b"champion weights"
    assert registry.file.read_bytes() == before and registry.champion()["id"] == "a"
    # the same file again (another run folder, same bytes) is a no-op that keeps the champion's status
    same = _run(tmp_path, "same", b"champion weights")
    assert main(["models", "--store", str(store), "register", str(same), "--id", "a"]) == 0
    assert registry.entry("a")["status"] == "champion"
    assert [e["action"] for e in registry.read()["events"]] == ["register", "promote"]


@pytest.mark.parametrize("bad_id", ["../x", "/ABS/evil", "a/b", "..", ".hidden", "", "a" * 129, "x\n"])
def test_unsafe_model_ids_are_refused_before_any_file_operation(tmp_path, capsys, bad_id):
    registry = _store_with_champion(tmp_path)
    run = _run(tmp_path, "new", b"new weights")
    bad_id = bad_id.replace("/ABS", str(tmp_path))
    before = _files(tmp_path)
    assert main(["models", "--store", str(registry.root), "register", str(run), "--id", bad_id]) == 2
    assert capsys.readouterr().err == f"mmcl models: error: model id {bad_id!r} is not a safe name: {SAFE_ID}\n"
    assert _files(tmp_path) == before  # nothing written or unlinked, inside the store or outside
    with pytest.raises(UserError, match="is not a safe name"):
        registry.promote(bad_id)


def test_a_planted_symlink_in_the_store_is_never_written_through(tmp_path, capsys):
    registry = _store_with_champion(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (registry.root / "evil").symlink_to(outside)
    run = _run(tmp_path, "new", b"new weights")
    assert main(["models", "--store", str(registry.root), "register", str(run), "--id", "evil"]) == 2
    assert capsys.readouterr().err == (
        f"mmcl models: error: {registry.root}/evil is a symlink or a file, not a folder of the store: refusing to "
        "write through it (move it away and register again)\n")
    assert list(outside.iterdir()) == []
    # a lock file planted as a symlink: the lock never opens (nor truncates) the file it points to
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (registry.root / ".lock").unlink()
    (registry.root / ".lock").symlink_to(victim)
    assert main(["models", "--store", str(registry.root), "register", str(run), "--id", "new"]) == 2
    assert capsys.readouterr().err == (
        f"mmcl models: error: cannot open the lock {registry.root}/.lock of the model store: Too many levels of "
        "symbolic links\n")
    assert victim.read_text() == "keep me"


# ---- class 6: a damaged registry file is named, never overwritten, and the way back is said

DAMAGED = {
    "object": (b"{}", "it has no champion, history, models, events (a registry holds champion, history, models, "
                      "events)"),
    "array": (b"[]", "its top level is a JSON array, not an object with champion, history, models, events"),
    "truncated": (b'{"champion": "a", "history": ["a"], "mod', "it is not valid JSON, truncated or damaged "
                                                               "(Unterminated string starting at: line 1, column 37)"),
    "garbage": (b"\x89\xff\x00binary", "it is not UTF-8 text (byte 0 is 0x89): garbage, not JSON"),
    "empty": (b"", "it is empty (0 bytes)"),
    "dangling champion": (b'{"champion": "ghost", "history": [], "models": {}, "events": []}',
                          "its champion 'ghost' is not among its models"),
}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_damaged_registry_says_what_is_wrong_and_how_to_restore(tmp_path, capsys, kind):
    registry = _store_with_champion(tmp_path)
    backup = registry.backup.read_bytes()
    content, problem = DAMAGED[kind]
    registry.file.write_bytes(content)
    store = registry.root
    for command in (["list"], ["promote", "a"], ["register", str(_run(tmp_path, "b", b"b")), "--id", "b"]):
        assert main(["models", "--store", str(store), *command]) == 2
        assert capsys.readouterr().err == (
            f"mmcl models: error: {store}/registry.json is not a usable model registry: {problem}. Nothing was "
            f"changed. The backup {store}/registry.json.bak is intact (the registry before its last change: champion "
            f"None, last event register a at {json.loads(backup)['events'][-1]['time']}): restore it with "
            f"`cp {store}/registry.json.bak {store}/registry.json`, check `mmcl models --store {store} list` and redo "
            "the last change if it is missing\n")
    assert registry.file.read_bytes() == content and registry.backup.read_bytes() == backup  # nothing overwritten
    assert not (store / "b").exists()
    # following the message restores a working registry
    registry.file.write_bytes(registry.backup.read_bytes())
    assert registry.entry("a")["metrics"]["retrieval_rsum"]["value"] == 200.0


def test_a_deleted_registry_is_not_taken_for_a_new_one(tmp_path, capsys):
    registry = _store_with_champion(tmp_path)
    registry.file.unlink()
    assert main(["models", "--store", str(registry.root), "register", str(_run(tmp_path, "b", b"b")), "--id", "b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmcl models: error: {registry.file} is not a usable model registry: it is missing, but its "
                          f"backup is there. Nothing was changed. The backup {registry.backup} is intact")
    assert not registry.file.exists() and not (registry.root / "b").exists()


def test_damaged_registry_without_backup_never_mentions_one(tmp_path, capsys):
    registry = ModelRegistry(tmp_path / "models")
    registry.register("a", _run(tmp_path, "a", b"weights"))  # the first change: nothing to back up yet
    assert not registry.backup.exists()
    registry.file.write_bytes(b"[]")
    store = registry.root
    assert main(["models", "--store", str(store), "list"]) == 2
    assert capsys.readouterr().err == (
        f"mmcl models: error: {store}/registry.json is not a usable model registry: its top level is a JSON array, "
        f"not an object with champion, history, models, events. Nothing was changed. There is no backup "
        f"({store}/registry.json.bak is written before each change after the first): move the damaged file aside "
        f"(`mv {store}/registry.json {store}/registry.json.damaged`) to start an empty registry; the model files in "
        f"{store}/<id>/ are kept, and each can be registered again with `mmcl models --store {store} register "
        f"{store}/<id> --id <id>`\n")
    # the advice works: the stored model is registered again from its own folder, same weights
    (store / "registry.json").rename(store / "registry.json.damaged")
    assert main(["models", "--store", str(store), "register", str(store / "a"), "--id", "a"]) == 0
    assert (store / "a" / "model.pt").read_bytes() == b"weights"


def test_damaged_registry_in_a_real_process_has_no_traceback(tmp_path):
    registry = _store_with_champion(tmp_path)
    registry.file.write_bytes(b"{}")
    r = subprocess.run([sys.executable, "-m", "mmcl", "models", "--store", str(registry.root), "list"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"mmcl models: error: {registry.root}/registry.json is not a usable model registry: "
                               "it has no champion, history, models, events")


# ---- class 6: a full disk in register and promote

def _disk_full(monkeypatch, after_calls: int = 0) -> None:
    """ENOSPC from the file system: hard links fail (another device, so the registry copies) and the copy's
    sendfile and every fsync after `after_calls` successful ones report a full disk."""
    calls = {"fsync": 0}
    real_fsync = os.fsync

    def full(*_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fsync(fd):
        calls["fsync"] += 1
        if calls["fsync"] > after_calls:
            full()
        real_fsync(fd)

    def link(*_args, **_kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "sendfile", full)
    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_in_register_leaves_no_partial_model_and_no_temporary(tmp_path, monkeypatch, capsys):
    registry = _store_with_champion(tmp_path)
    store, before = registry.root, _files(registry.root)
    run = _run(tmp_path, "b", b"b weights " * 1000)
    _disk_full(monkeypatch)
    assert main(["models", "--store", str(store), "register", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"mmcl models: error: cannot write {store}/b/model.pt: no space left on device (ENOSPC); b was not "
        "registered. Free space (or fix the cause) and rerun\n")
    monkeypatch.undo()
    assert _files(store) == before  # no 0-byte model.pt, registry unchanged
    assert _temporaries(store) == []
    assert main(["models", "--store", str(store), "register", str(run)]) == 0  # with space again it works
    assert (store / "b" / "model.pt").read_bytes() == b"b weights " * 1000


@pytest.mark.parametrize("after_calls, failed", [(0, "registry.json.bak"), (1, "registry.json")])
def test_disk_full_in_promote_keeps_the_champion(tmp_path, monkeypatch, capsys, after_calls, failed):
    registry = _store_with_champion(tmp_path)
    registry.register("b", _run(tmp_path, "b", b"b weights"))
    registry.record_metric("b", "sts_avg", 75.0, STS)
    registry.record_metric("b", "retrieval_rsum", 250.0, RET)
    store, before = registry.root, _files(registry.root)
    _disk_full(monkeypatch, after_calls)  # the backup write fails, or the backup succeeds and the registry's fails
    assert main(["models", "--store", str(store), "promote", "b"]) == 2
    assert capsys.readouterr().err == (
        f"mmcl models: error: cannot write {store}/{failed}: no space left on device (ENOSPC); nothing was changed: "
        f"{store}/registry.json holds the registry as it was before. Free space (or fix the cause) and rerun\n")
    monkeypatch.undo()
    assert _files(store)["registry.json"] == before["registry.json"] and registry.champion()["id"] == "a"
    assert _temporaries(store) == []
    registry.promote("b")
    assert registry.champion()["id"] == "b"


# ---- classes 6, 7: config values Lightning (or nothing) would have refused later, refused first

@pytest.mark.parametrize("override, message", [
    ("train.max_epochs=-5", "train.max_epochs: -5 is out of range: must be >= 1"),
    ("train.precision=bogus", "train.precision: 'bogus' is not one of auto, 32-true, 16-mixed, bf16-mixed, 16-true, "
                              "bf16-true, 64-true"),
    ("train.strategy=ddpp", "train.strategy: 'ddpp' is not one of auto, ddp, ddp_spawn, ddp_fork, ddp_notebook, "
                            "ddp_find_unused_parameters_true, ddp_find_unused_parameters_false, fsdp, deepspeed, "
                            "single_device"),
    ("train.lr=-1", "train.lr: -1.0 is out of range: must be > 0"),
    ("train.checkpoint_every_n_steps=0", "train.checkpoint_every_n_steps: 0 is out of range: must be >= 1"),
    ("data.max_train_images=0", "data.max_train_images: 0 is out of range: must be >= 1 or null"),
])
def test_train_refuses_out_of_range_config_before_anything_is_built(tmp_path, capsys, override, message):
    assert main(["train", "--config", TINY, "--set", f"runs_dir={tmp_path}", "--set", override]) == 2
    assert capsys.readouterr().err == f"mmcl train: error: {message}\n"
    assert list(tmp_path.iterdir()) == []  # no run directory


# ---- class 6: a last.ckpt that cannot be resumed from

RESUME = ["--set", "data.modalities=[image,audio]", "--no-eval"]


def _planted_run(tmp_path: Path):
    cfg = load_config(TINY, [f"runs_dir={tmp_path}", "data.modalities=[image,audio]"])
    last = cfg.run_dir() / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    return cfg.run_dir(), last


class _Payload:
    """Unpickling this runs `touch <marker>`: what a malicious checkpoint does under weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _lightning_like(**extra):
    return {"state_dict": {}, "global_step": 4, "epoch": 0, "loops": {}, "optimizer_states": [],
            "lr_schedulers": [], **extra}


CKPTS = {
    "garbage": (lambda p, m: p.write_bytes(b"this is not a checkpoint\n"),
                "{last} is not a PyTorch file (it starts with b'this is not a ch'; a torch file is a zip archive)"),
    "empty": (lambda p, m: p.write_bytes(b""), "{last} is empty (0 bytes): a write interrupted by a kill or a full disk"),
    "malicious": (lambda p, m: torch.save(_lightning_like(hook=_Payload(m)), p),
                  "{last} holds Python objects, not only weights (it names posix.system): refused without running "
                  "it (mmcl loads weights-only files; a file from elsewhere may be malicious)"),
    "truncated": (lambda p, m: p.write_bytes(_saved(_lightning_like())[:300]),
                  "{last} is truncated or damaged (300 bytes; torch cannot read it: PytorchStreamReader failed reading "
                  "zip archive: failed finding central directory)"),
    "not lightning": (lambda p, m: torch.save({"global_step": 4}, p),
                      "{last} is not a Lightning training checkpoint (no state_dict, epoch, loops, optimizer_states, "
                      "lr_schedulers)"),
    "bad step": (lambda p, m: torch.save(_lightning_like(global_step="4"), p),
                 "{last} holds global_step '4' (expected an integer >= 0)"),
}


def _saved(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", list(CKPTS))
def test_unusable_last_ckpt_stops_resume_with_what_to_do(tmp_path, capsys, kind):
    run_dir, last = _planted_run(tmp_path)
    marker = tmp_path / "payload-ran"
    plant, reason = CKPTS[kind]
    plant(last, marker)
    planted = last.read_bytes()
    assert main(["train", "--config", TINY, "--set", f"runs_dir={tmp_path}", *RESUME]) == 2
    assert capsys.readouterr().err == (
        f"mmcl train: error: cannot resume {run_dir}: {reason.format(last=last)}. Start this run over with the same "
        f"command and --fresh (deletes {run_dir}), or move the file aside (`mv {last} {last}.broken`) and rerun, "
        "which also starts from step 0\n")
    assert not marker.exists()  # the payload never ran
    assert last.read_bytes() == planted  # the evidence is left where it was


def test_another_models_checkpoint_is_refused_naming_the_weights(tmp_path, capsys):
    run_dir, last = _planted_run(tmp_path)
    torch.save(_lightning_like(state_dict={"model.encoders.audio.head.weight": torch.zeros(3, 3)}), last)
    assert main(["train", "--config", TINY, "--set", f"runs_dir={tmp_path}", *RESUME]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmcl train: error: cannot resume {run_dir}: the weights in {last} are not this model's (")
    assert "missing (e.g. model." in err and "1 unknown (e.g. model.encoders.audio.head.weight)" in err


def test_garbage_last_ckpt_in_a_real_process_has_no_traceback(tmp_path):
    run_dir, last = _planted_run(tmp_path)
    last.write_bytes(b"\x80\x04garbage")
    r = subprocess.run([sys.executable, "-m", "mmcl", "train", "--config", TINY, "--set", f"runs_dir={tmp_path}",
                        *RESUME], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"mmcl train: error: cannot resume {run_dir}: {last}" in r.stderr


# ---- class 9: checkpoint messages say what is wrong

@pytest.mark.parametrize("content, reason", [
    (b"e", "is not a PyTorch file (it starts with b'e'; a torch file is a zip archive)"),
    (b"hello, world", "is not a PyTorch file (it starts with b'hello, world'; a torch file is a zip archive)"),
    (b"PK\x03\x04broken zip", "is truncated or damaged (14 bytes; torch cannot read it: PytorchStreamReader failed "
                              "reading zip archive: not a ZIP archive)"),
])
def test_loading_a_bad_model_file_says_what_it_is(tmp_path, content, reason):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_model(path)
    assert str(error.value) == f"{path} {reason}"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UserError) as error:
        load_model(path)
    assert str(error.value) == f"{path} is neither an mmcl model file nor a Lightning checkpoint (keys: weights)"
