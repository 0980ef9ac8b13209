"""Dataset versions with DVC: `dvc add` the shard folder, push it to a remote, record its lineage.

DVC runs as its own CLI (`python -m dvc`, the same interpreter) so mmcl never holds DVC's repo lock while
a `dvc repro` runs it. Analytics and update checks are off. The default remote is a local directory
(`.dvc/local-remote` inside the repository: the embedded default); any DVC remote works by config:

    dvc remote add -d --local store s3://bucket/mmcl-dvc     # per machine, not committed (config.local)
    dvc remote add -d store s3://bucket/mmcl-dvc             # for everyone (committed .dvc/config)
    python -m mmcl data remote s3://bucket/mmcl-dvc [--name store] [--local]   # the same, via mmcl
(s3:// needs the dvc-s3 plugin: pip install dvc-s3; gs:// dvc-gs, azure:// dvc-azure, ssh:// dvc-ssh.)

A dataset version's identity is its DVC md5: the md5 of the folder's entry list ("<hex>.dir"), as written in
`<folder>.dvc` or dvc.lock. `dir_md5` computes the same value without DVC (pipeline stages, where DVC itself
caches the output), so lineage records made either way are keyed alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mmcl.data.manifest import write_json
from mmcl.errors import UserError
from mmcl.faults import maybe_fault

DEFAULT_REMOTE_NAME = "local"
DEFAULT_REMOTE_DIR = "local-remote"  # relative to .dvc/: <repo>/.dvc/local-remote
DVC_ENV = {"DVC_NO_ANALYTICS": "1"}


class DvcError(UserError):
    """A dvc command failed; carries its output."""


def dir_md5(folder: str | os.PathLike) -> str:
    """DVC 3's md5 of a directory: md5 of the sorted JSON list of {"md5", "relpath"} entries, + ".dir"."""
    root = Path(folder)
    entries = []
    for path in root.rglob("*"):
        if path.is_file():
            digest = hashlib.md5()
            with open(path, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
            entries.append({"md5": digest.hexdigest(), "relpath": path.relative_to(root).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


class DvcRepo:
    """A DVC repository at `root`, driven through the dvc CLI."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    @classmethod
    def find(cls, start: str | os.PathLike = ".") -> DvcRepo:
        """The DVC repository containing `start` (a .dvc folder in it or a parent)."""
        here = Path(start).resolve()
        for folder in (here, *here.parents):
            if (folder / ".dvc").is_dir():
                return cls(folder)
        raise UserError(f"{here} is not inside a DVC repository: run `dvc init` (or `python -m mmcl data remote`)")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, **DVC_ENV}
        done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=self.root, env=env,
                              capture_output=True, text=True)
        if check and done.returncode != 0:
            raise DvcError(f"`dvc {' '.join(args)}` failed in {self.root} (exit {done.returncode}):\n"
                           f"{(done.stderr or done.stdout).strip()}")
        return done

    def init(self, remote_url: str | None = None) -> None:
        """`dvc init` if needed, analytics and update checks off, a default remote if none is set."""
        if not (self.root / ".dvc").is_dir():
            self.run("init", "-q", *(() if (self.root / ".git").exists() else ("--no-scm",)))
        self.run("config", "core.analytics", "false")
        self.run("config", "core.check_update", "false")
        if remote_url or not self.default_remote():
            self.set_remote(remote_url or DEFAULT_REMOTE_DIR, DEFAULT_REMOTE_NAME)

    def set_remote(self, url: str, name: str = DEFAULT_REMOTE_NAME, *, local: bool = False) -> None:
        """Add (or replace) remote `name` and make it the default. A relative local path is taken
        relative to .dvc/ (where the config lives), so `local-remote` means <repo>/.dvc/local-remote."""
        if "://" not in url and not Path(url).is_absolute():
            url = os.path.relpath(self.root / ".dvc" / url, self.root)  # dvc resolves it against cwd
        self.run("remote", "add", "-f", "-d", *(("--local",) if local else ()), name, url)

    def default_remote(self) -> str | None:
        done = self.run("config", "core.remote", check=False)
        return done.stdout.strip() or None if done.returncode == 0 else None

    def remote_url(self, name: str | None = None) -> str | None:
        name = name or self.default_remote()
        if not name:
            return None
        done = self.run("config", f"remote.{name}.url", check=False)
        return done.stdout.strip() or None

    def add(self, target: str | os.PathLike) -> str:
        """`dvc add` a folder; returns its md5 from the written .dvc file."""
        target = Path(target).resolve()
        self.run("add", "-q", os.path.relpath(target, self.root))
        return read_dvc_md5(target.with_name(target.name + ".dvc"))

    def push(self, target: str | os.PathLike, remote: str | None = None) -> None:
        self.run("push", "-q", *(("-r", remote) if remote else ()), os.path.relpath(Path(target).resolve(), self.root))

    def checkout(self, *targets: str) -> None:
        self.run("checkout", "-q", "--force", *targets)

    def status(self, *targets: str) -> dict[str, Any]:
        """`dvc status --json`: {} when everything is up to date."""
        done = self.run("status", "--json", *targets)
        return json.loads(done.stdout or "{}")


def read_dvc_md5(dvc_file: str | os.PathLike) -> str:
    """The md5 of the single output described by a .dvc file."""
    path = Path(dvc_file)
    outs = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise UserError(f"{path}: expected one output with an md5, found {outs}")
    return outs[0]["md5"]


def drop_validation_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a drop's validation report a lineage record keeps (counts, failing checks)."""
    def by_check(items: list[dict[str, Any]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in items:
            counts[item["check"]] = counts.get(item["check"], 0) + 1
        return dict(sorted(counts.items()))

    keep = {k: report.get(k) for k in ("drop", "status", "rows", "accepted", "quarantined", "warned", "media_check")}
    return {**keep, "failed_checks": by_check(report.get("failures", [])),
            "warning_checks": by_check(report.get("warnings", []))}


def _rejected_drops(rejected_root: Path | None) -> list[dict[str, Any]]:
    if rejected_root is None or not rejected_root.is_dir():
        return []
    found = []
    for path in sorted(rejected_root.glob("*/rejection.json")):
        try:
            rejection = json.loads(path.read_text(encoding="utf-8"))
            found.append({"drop": rejection["drop"], "reason": rejection["reason"]})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            found.append({"drop": path.parent.name, "reason": f"{path} is unreadable ({exc})"})
    return found


def version_dataset(accepted_root: str | os.PathLike, dataset_dir: str | os.PathLike, *, shard_size: int = 256,
                    lineage_dir: str | os.PathLike | None = None, use_dvc: bool = True, push: bool = True,
                    remote: str | None = None, rejected_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Add the accepted drops to the dataset's shards, then (use_dvc) `dvc add` + `dvc push` it, and write
    its lineage record. Returns the record (its "md5" is the version's DVC md5).

    A transaction: the md5 the new version grows from is journaled (lineage/pending/) before anything
    changes, and the journal is removed once the lineage record is written. A run killed anywhere
    leaves the previous version restorable (its shards untouched, its .dvc in git, its cache and remote
    objects in place); the rerun completes the new version and takes `previous_md5` from the journal,
    not from a .dvc file the killed run may already have advanced."""
    from mmcl.data.shards import build_dataset
    from mmcl.lineage import LineageStore, UnreadableRecord, dataset_record

    dataset = Path(dataset_dir).resolve()
    dvc_file = dataset.with_name(dataset.name + ".dvc")
    repo = DvcRepo.find(dataset.parent) if use_dvc else None
    store = LineageStore(lineage_dir)
    journal = store.root / "pending" / f"dataset-{hashlib.sha256(str(dataset).encode()).hexdigest()[:12]}.json"
    previous = _begin(journal, dvc_file if use_dvc else None, store)
    maybe_fault("versioning.after_journal")
    info = build_dataset(accepted_root, dataset, shard_size)
    if repo is not None:
        md5 = repo.add(dataset)
        maybe_fault("versioning.after_add")
        if push:
            repo.push(dvc_file, remote)
            maybe_fault("versioning.after_push")
        remote_url = repo.remote_url(remote)
    else:
        md5, remote_url = dir_md5(dataset), None
    path = store.path("dataset", md5)
    try:
        stored = store.read("dataset", md5) if path.is_file() else None
    except UnreadableRecord:
        stored = None  # rewritten below (a self-contained record of this exact version)
    if previous == md5 and (stored is None or stored.get("previous_md5") == md5):
        previous = _predecessor_unknown(path, dvc_file, stored is None and not path.is_file())
    reports = []
    for drop in info["drops"]:
        report_path = Path(accepted_root) / drop["name"] / "report.json"
        if report_path.is_file():
            reports.append(drop_validation_summary(json.loads(report_path.read_text(encoding="utf-8"))))
    if stored is not None and stored.get("previous_md5") != md5:
        record = stored  # the same md5 means the same bytes: the first record is kept
    else:
        record = dataset_record(md5, os.path.relpath(dataset), info, reports, previous_md5=previous,
                                remote=remote_url if push else None,
                                rejected=_rejected_drops(Path(rejected_root) if rejected_root else None))
        path = store.write("dataset", md5, record, overwrite=True)
    maybe_fault("versioning.after_lineage")
    journal.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # no empty folder left in the (git-tracked) lineage store
        journal.parent.rmdir()
    return {**record, "lineage_file": str(path)}


def _begin(journal: Path, dvc_file: Path | None, store: Any) -> str | None:
    """The md5 this run's version grows from: the journal's when a killed run left one that still holds
    (the .dvc is the journaled md5, or one no lineage record vouches for: the killed run's own `dvc add`),
    else the .dvc file's, journaled now."""
    current = read_dvc_md5(dvc_file) if dvc_file is not None and dvc_file.is_file() else None
    if journal.is_file():
        try:
            pending = json.loads(journal.read_text(encoding="utf-8"))
            journaled = pending["previous_md5"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{journal}: versioning journal is unreadable ({exc}); delete it and rerun "
                            "`mmcl data version` (previous_md5 is then taken from the .dvc file)") from exc
        if current == journaled or (current is not None and not store.path("dataset", current).is_file()):
            return journaled
    write_json(journal, {"previous_md5": current, "dvc_file": str(dvc_file) if dvc_file else None})
    return current


def _predecessor_unknown(path: Path, dvc_file: Path, missing: bool) -> None:
    """This run added nothing and the version's record cannot say where it came from."""
    if missing:
        return None  # a version mmcl never recorded (added by hand): recorded with no predecessor
    raise UserError(f"{path}: the lineage record of the current dataset version is unreadable or says the version "
                    f"grew from itself, and this run added nothing, so its predecessor is not known here: restore the "
                    f"record from git (`git checkout -- {path}`), or delete it and write it again by rerunning "
                    f"`mmcl data version` after checking out the previous {dvc_file.name} (see `git log -p {dvc_file}`)")
