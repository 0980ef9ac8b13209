"""Champion/challenger model registry: one JSON file in a store folder, changed under a file lock.

    models/registry.json        {"champion": id | null, "history": [ids, in the order they became champion],
                                 "models": {id: entry}, "events": [{"time", "action", "model", ...}]}
    models/registry.json.bak    the registry as it was before its last change (written before every change)
    models/<id>/model.pt        a hard link (or copy) of the run's model.pt, so rollback survives `rm -r runs/`
    models/<id>/config.yaml     the resolved config it was trained with; MODEL_CARD.md beside it

A trained model is registered as a *challenger*; its evaluations are recorded as named metrics, each with
the protocol that produced it (which sets, how many pairs), because numbers from different protocols are
not comparable. `promote` makes a challenger the champion only if, on every gated metric, it is not worse
than the champion beyond that metric's tolerance; otherwise (or through `reject`, for a gate decided
elsewhere) the model becomes "rejected", with the reasons in a "rejected" event. A forced promotion and a
rollback record who did it and why. `rollback` restores the previous champion.

What the store guarantees: ids are safe names (ID_PATTERN), so every file stays inside the store; registered
weights are never replaced (registering an id again is a no-op for the same file, by sha256, and refused for
another); every write is atomic (a kill or a full disk leaves the previous registry and files, and no
temporary file once the next change has run); a damaged registry.json is never overwritten and the error
says how to restore it. Fault points (mmcl.faults) sit at each step boundary for the fault-injection tests.

    mmcl models list                     mmcl models promote tiny-1ab76797de8c
    mmcl models rollback                 (store: --store, else $MMCL_MODEL_STORE, else ./models)

Relations: the Dagster asset `promoted_model` calls `promote`; the blocking checks before it call `gate`
(orchestration/defs/evaluation). The model's lineage and card live in mmcl.model_card.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmcl.data.manifest import atomic_write_bytes, atomic_write_text, remove_stale, sha256_file
from mmcl.errors import UserError
from mmcl.faults import maybe_fault

ENV_STORE = "MMCL_MODEL_STORE"
DEFAULT_STORE = "models"
REGISTRY_FILE = "registry.json"
BACKUP_FILE = REGISTRY_FILE + ".bak"
MODEL_FILE, CONFIG_FILE = "model.pt", "config.yaml"
SCHEMA_VERSION = 1
CHALLENGER, CHAMPION, RETIRED, ROLLED_BACK, REJECTED = "challenger", "champion", "retired", "rolled_back", "rejected"
# an id names a folder inside the store: no separator, no leading dot (so never "." or ".."), bounded length
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# metric -> how much worse than the champion a challenger may be (same units as the metric): the margin of
# the paired test. 0: a challenger is refused only when shown worse at the gate's confidence.
DEFAULT_TOLERANCES = {"sts_avg": 0.0, "retrieval_rsum": 0.0}
DEFAULT_CONFIDENCE = 0.95


class PromotionRefused(UserError):
    """The challenger is worse than the champion beyond the tolerance (carries the gate result)."""

    def __init__(self, gate: GateResult):
        self.gate = gate
        super().__init__(f"not promoting {gate.challenger}: {gate.summary()}")


@dataclass
class MetricComparison:
    metric: str
    challenger: float | None
    champion: float | None
    tolerance: float  # the margin: how much worse than the champion is still acceptable
    passed: bool
    reason: str
    paired: dict[str, Any] | None = None  # the paired bootstrap decision (mmcl.promotion), when items exist


@dataclass
class GateResult:
    """The decision for one challenger against the current champion, metric by metric."""

    challenger: str
    champion: str | None
    passed: bool
    comparisons: list[MetricComparison] = field(default_factory=list)

    def summary(self) -> str:
        if self.champion is None:
            return "no champion yet: the first model is promoted"
        return "; ".join(f"{c.metric}: {c.reason}" for c in self.comparisons)

    def failures(self) -> list[str]:
        return [f"{c.metric}: {c.reason}" for c in self.comparisons if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def items_file(source: str | None) -> Path | None:
    """The per-item results written beside an evaluation report (<stem>.items.npz), if any."""
    if not source:
        return None
    path = Path(source).with_suffix(".items.npz")
    return path if path.is_file() else None


def check_model_id(model_id: Any) -> str:
    """`model_id` if it is a safe folder name inside the store; UserError before any file is touched otherwise."""
    if not isinstance(model_id, str) or not ID_PATTERN.fullmatch(model_id):
        raise UserError(f"model id {model_id!r} is not a safe name: 1 to 128 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit (it names a folder inside the model store)")
    return model_id


def resolve_tolerances(overrides: dict[str, float] | None = None) -> dict[str, float]:
    """DEFAULT_TOLERANCES with `overrides` applied: naming one gated metric never drops another gate."""
    tolerances = dict(DEFAULT_TOLERANCES)
    for metric, tolerance in (overrides or {}).items():
        if metric not in DEFAULT_TOLERANCES:
            raise UserError(f"unknown gated metric {metric!r} in the tolerances (gated: {', '.join(DEFAULT_TOLERANCES)})")
        if isinstance(tolerance, bool) or _finite(tolerance) is None or tolerance < 0:
            raise UserError(f"tolerance of {metric}: {tolerance!r} is not a finite number >= 0")
        tolerances[metric] = float(tolerance)
    return tolerances


def compare_metric(metric: str, challenger: dict[str, Any] | None, champion: dict[str, Any] | None,
                   tolerance: float, confidence: float = 0.95) -> MetricComparison:
    """One gated metric of the challenger against the champion, under the same protocol.

    When both evaluations left their per-item results, the decision is the paired bootstrap of
    mmcl.promotion: the challenger fails only if it is worse than the champion by more than `tolerance`
    at `confidence`. Otherwise (an evaluation without items) it falls back to the point comparison
    challenger >= champion - tolerance, and says so. A challenger with no (or a non-finite) value fails: it
    cannot show it is not worse. A champion without the metric does not gate it, which the reason says.
    """
    new = _finite((challenger or {}).get("value"))
    old = _finite((champion or {}).get("value"))
    if new is None:
        return MetricComparison(metric, new, old, tolerance, False, "challenger has no finite value")
    if champion is None or old is None:
        return MetricComparison(metric, new, old, tolerance, True, "champion has no value: not gated")
    if challenger.get("protocol") != champion.get("protocol"):
        return MetricComparison(metric, new, old, tolerance, False,
                                f"protocols differ ({challenger.get('protocol')!r} vs {champion.get('protocol')!r}):"
                                " re-evaluate the champion under the challenger's protocol")
    mine, theirs = items_file(challenger.get("source")), items_file(champion.get("source"))
    if mine and theirs:
        from mmcl.promotion import COMPARATORS, compare_items

        if metric in COMPARATORS:
            decision = compare_items(metric, theirs, mine, confidence=confidence, margin=tolerance)
            return MetricComparison(metric, new, old, tolerance, decision.passed, decision.reason(),
                                    decision.to_dict())
    passed = new >= old - tolerance
    verdict = "not worse" if passed else "worse"
    return MetricComparison(metric, new, old, tolerance, passed,
                            f"{new:.2f} vs champion {old:.2f} (tolerance {tolerance:g}, point comparison: no "
                            f"per-item results to test): {verdict}")


def _place(src: Path, dst: Path) -> None:
    """Put `src` at `dst` atomically: a hard link (a copy, fsynced, on another file system) under a temporary
    name beside `dst`, then a rename; a failure or a kill leaves `dst` as it was."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and os.path.samefile(src, dst):  # already linked (rename() of two links to one file is a no-op
        return                                      # that would leave the temporary name behind)
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or no hard links there
            shutil.copyfile(src, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        maybe_fault("registry.before_place")
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _check_shape(state: Any) -> dict[str, Any]:
    """The parsed registry if it has the registry's shape; ValueError saying what is wrong otherwise."""
    keys = ("champion", "history", "models", "events")
    if not isinstance(state, dict):
        raise ValueError(f"its top level is a JSON {_json_kind(state)}, not an object with {', '.join(keys)}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"it has no {', '.join(missing)} (a registry holds {', '.join(keys)})")
    if isinstance(state.get("schema"), int) and state["schema"] > SCHEMA_VERSION:
        raise ValueError(f"it has schema {state['schema']}, newer than this mmcl's {SCHEMA_VERSION}: upgrade mmcl")
    models = state["models"]
    if not isinstance(models, dict) or any(not isinstance(e, dict) or e.get("id") != k or "status" not in e
                                           or not isinstance(e.get("metrics"), dict) for k, e in models.items()):
        raise ValueError("its models are not a mapping of each id to an entry with that id, a status and metrics")
    if state["champion"] is not None and state["champion"] not in models:
        raise ValueError(f"its champion {state['champion']!r} is not among its models")
    if not isinstance(state["history"], list) or any(h not in models for h in state["history"] if isinstance(h, str)) \
            or not all(isinstance(h, str) for h in state["history"]):
        raise ValueError("its history names a model that is not registered")
    if not isinstance(state["events"], list):
        raise ValueError(f"its events are a JSON {_json_kind(state['events'])}, not an array")
    return state


def _load_state(path: Path) -> dict[str, Any]:
    """Parse and check one registry file; ValueError (or OSError) saying what is wrong with it."""
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"it is empty ({len(data)} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}): garbage, not JSON") from exc
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"it is not valid JSON, truncated or damaged ({exc.msg}: line {exc.lineno}, "
                         f"column {exc.colno})") from exc
    return _check_shape(state)


def _write_error(path: Path, exc: Exception, unchanged: str) -> UserError:
    """The message for a failed write: the OSError itself, or the one a writer wrapped in a UserError."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(cause, OSError):
        reason = "no space left on device (ENOSPC)" if cause.errno == errno.ENOSPC else (cause.strerror or str(cause))
    else:
        reason = str(exc)
    return UserError(f"cannot write {path}: {reason}; {unchanged}. Free space (or fix the cause) and rerun")


class ModelRegistry:
    """The registry in `store` (default $MMCL_MODEL_STORE or ./models)."""

    def __init__(self, store: str | os.PathLike | None = None):
        self.root = Path(store or os.environ.get(ENV_STORE) or DEFAULT_STORE)
        self.file = self.root / REGISTRY_FILE
        self.backup = self.root / BACKUP_FILE

    # ---- storage
    def read(self) -> dict[str, Any]:
        if not self.file.exists() and not self.file.is_symlink():
            if self.backup.exists():  # deleted, not new: starting empty would silently drop every model
                raise self._damaged(ValueError("it is missing, but its backup is there"))
            return {"schema": SCHEMA_VERSION, "champion": None, "history": [], "models": {}, "events": []}
        try:
            return _load_state(self.file)
        except (ValueError, OSError) as exc:
            raise self._damaged(exc) from exc

    def _damaged(self, exc: Exception) -> UserError:
        """What is wrong with registry.json, and what to do: restore the backup if it is intact."""
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        store = f"--store {self.root}"
        try:
            saved = _load_state(self.backup)
        except FileNotFoundError:
            saved, why = None, f"there is no backup ({self.backup} is written before each change after the first)"
        except (ValueError, OSError) as backup_exc:
            saved, why = None, f"the backup {self.backup} is not usable either ({backup_exc})"
        if saved is not None:
            last = saved["events"][-1] if saved["events"] else {}
            todo = (f"The backup {self.backup} is intact (the registry before its last change: champion "
                    f"{saved['champion']!r}, last event {last.get('action')} {last.get('model')} at {last.get('time')}): "
                    f"restore it with `cp {self.backup} {self.file}`, check `mmcl models {store} list` and redo the "
                    "last change if it is missing")
        else:
            todo = (f"{why[0].upper()}{why[1:]}: move the damaged file aside (`mv {self.file} {self.file}.damaged`) "
                    f"to start an empty registry; the model files in {self.root}/<id>/ are kept, and each can be "
                    f"registered again with `mmcl models {store} register {self.root}/<id> --id <id>`")
        return UserError(f"{self.file} is not a usable model registry: {problem}. Nothing was changed. {todo}")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW, no truncation: a .lock planted as a symlink never lets the lock touch another file
            fd = os.open(self.root / ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise UserError(f"cannot open the lock {self.root / '.lock'} of the model store: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._sweep_temporary()
            yield

    def _sweep_temporary(self) -> None:
        """Remove what an interrupted change left (a kill between a temporary file and its rename): the
        registry writer's temporaries (manifest.remove_stale: those of dead processes) and _place's, which only
        changes under the lock write: the lock is held, so none of them is in use."""
        remove_stale(self.root)
        for path in [*self.root.glob(f"*/.{MODEL_FILE}.*.tmp"), *self.root.glob(f"*/.{CONFIG_FILE}.*.tmp")]:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock: two runs never lose each other's changes. The file is
        backed up first; a damaged file is never read as empty, so it is never overwritten."""
        with self._locked():
            state = self.read()
            yield state
            target = self.backup
            try:
                if self.file.is_file():
                    atomic_write_bytes(self.backup, self.file.read_bytes())
                maybe_fault("registry.after_backup")
                target = self.file
                atomic_write_text(self.file, json.dumps(state, indent=2, sort_keys=True) + "\n")
            except (OSError, UserError) as exc:  # a writer may report a failed write as a UserError
                self._sweep_temporary()
                raise _write_error(target, exc, f"nothing was changed: {self.file} holds the registry as it "
                                                "was before") from exc
            maybe_fault("registry.after_write")

    def entry(self, model_id: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
        check_model_id(model_id)
        models = (state or self.read())["models"]
        if model_id not in models:
            known = ", ".join(sorted(models)) or "none"
            raise UserError(f"model {model_id!r} is not in the registry {self.file} (registered: {known})")
        return models[model_id]

    def champion(self) -> dict[str, Any] | None:
        state = self.read()
        return state["models"][state["champion"]] if state["champion"] else None

    def list(self) -> list[dict[str, Any]]:
        return sorted(self.read()["models"].values(), key=lambda e: e["registered_at"])

    # ---- changes
    def register(self, model_id: str, run_dir: str | os.PathLike, **info: Any) -> dict[str, Any]:
        """Add a trained run as a challenger. Registering an id again keeps its status and metrics when it is
        the same model.pt (by sha256) and is refused for another file: registered weights are never replaced."""
        check_model_id(model_id)
        run = Path(run_dir)
        model_file = run / MODEL_FILE
        if not model_file.is_file():
            raise UserError(f"{run} holds no {MODEL_FILE}: train it first (mmcl train ...)")
        sha256 = sha256_file(model_file)
        folder = self.root / model_id
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UserError(f"{folder} is a symlink or a file, not a folder of the store: refusing to write through "
                            "it (move it away and register again)")
        with self._edit() as state:
            old = state["models"].get(model_id)
            if old is not None:
                self._check_same_weights(old, folder / MODEL_FILE, model_file, sha256)
            try:
                if old is None or not (folder / MODEL_FILE).is_file():
                    _place(model_file, folder / MODEL_FILE)
                if (run / CONFIG_FILE).is_file() and (old is None or not (folder / CONFIG_FILE).is_file()):
                    _place(run / CONFIG_FILE, folder / CONFIG_FILE)
            except OSError as exc:
                self._sweep_temporary()
                raise _write_error(folder / MODEL_FILE, exc, f"{model_id} was not registered") from exc
            maybe_fault("registry.after_copy")
            old = old or {}
            entry = {"id": model_id, "run_dir": str(run.resolve()), "model_file": str((folder / MODEL_FILE).resolve()),
                     "sha256": sha256, "status": old.get("status", CHALLENGER),
                     "registered_at": old.get("registered_at", _now()), "metrics": old.get("metrics", {}),
                     **{k: v for k, v in info.items() if v is not None}}
            state["models"][model_id] = entry
            if not old:
                state["events"].append({"time": _now(), "action": "register", "model": model_id, "sha256": sha256})
        return entry

    def _check_same_weights(self, old: dict[str, Any], stored: Path, new: Path, sha256: str) -> None:
        known = old.get("sha256") or (sha256_file(stored) if stored.is_file() else None)
        if known is None:
            raise UserError(f"model id {old['id']!r} is registered but {stored} is missing and no sha256 was "
                            f"recorded, so {new} cannot be shown to be the same model: register it under another "
                            f"id (`mmcl models register {new.parent} --id <new id>`)")
        if known != sha256:
            raise UserError(f"model id {old['id']!r} is already registered with other weights ({stored}: sha256 "
                            f"{known[:12]}, {new}: sha256 {sha256[:12]}); registered weights are never replaced: "
                            f"register this run under another id (`mmcl models register {new.parent} --id <new id>`)")

    def record_metric(self, model_id: str, metric: str, value: float, protocol: str, source: str | None = None) -> None:
        """Store one evaluation result (replacing an older one of the same metric)."""
        with self._edit() as state:
            entry = self.entry(model_id, state)
            entry["metrics"][metric] = {"value": _finite(value), "protocol": protocol, "source": source, "at": _now()}

    def gate(self, model_id: str, tolerances: dict[str, float] | None = None,
             confidence: float = DEFAULT_CONFIDENCE) -> GateResult:
        """Compare `model_id` with the current champion on every gated metric (no change made).

        `tolerances` overrides the margins of the metrics it names; every other gated metric keeps its
        default (`--tolerance sts_avg=1` never drops the RSUM gate). `confidence` is the whole gate's: each
        of the m metrics is decided at 1 - (1 - confidence) / m (Bonferroni), so a challenger as good as the
        champion is rejected with probability at most 1 - confidence."""
        return self._gate(self.read(), model_id, resolve_tolerances(tolerances), confidence)

    def _gate(self, state: dict[str, Any], model_id: str, tolerances: dict[str, float],
              confidence: float = DEFAULT_CONFIDENCE) -> GateResult:
        per_metric = 1.0 - (1.0 - confidence) / max(1, len(tolerances))
        challenger = self.entry(model_id, state)
        champ_id = state["champion"]
        if champ_id is None or champ_id == model_id:
            return GateResult(model_id, champ_id, True)
        champion = state["models"][champ_id]
        comparisons = [compare_metric(m, challenger["metrics"].get(m), champion["metrics"].get(m), tol, per_metric)
                       for m, tol in tolerances.items()]
        return GateResult(model_id, champ_id, all(c.passed for c in comparisons), comparisons)

    def promote(self, model_id: str, tolerances: dict[str, float] | None = None, *, force: bool = False,
                by: str | None = None, reason: str | None = None,
                confidence: float = DEFAULT_CONFIDENCE) -> GateResult:
        """Make `model_id` the champion if the gate passes; otherwise record it as rejected and raise
        PromotionRefused. `force` promotes past a failing gate and needs `by` (who) and `reason` (why),
        which the promote event keeps. The gate is decided under the lock: another run may have promoted."""
        check_model_id(model_id)
        tolerances = resolve_tolerances(tolerances)
        if force and not (by and reason):
            raise UserError(f"a forced promotion of {model_id} needs who forces it and why (by=..., reason=...; "
                            "`mmcl models promote --force --reason ...`): both are kept in the registry's events")
        with self._edit() as state:
            gate = self._gate(state, model_id, tolerances, confidence)
            if not gate.passed and not force:
                self._reject(state, model_id, gate.failures(), gate.to_dict())
            else:
                entry = self.entry(model_id, state)
                previous = state["champion"]
                if previous != model_id:
                    if previous:
                        state["models"][previous]["status"] = RETIRED
                    state["history"].append(model_id)
                state["champion"] = model_id
                entry["status"], entry["promoted_at"] = CHAMPION, _now()
                state["events"].append({"time": _now(), "action": "promote", "model": model_id, "previous": previous,
                                        "forced": force, "gate_passed": gate.passed, "by": by, "reason": reason,
                                        "gate": gate.to_dict()})
        if not gate.passed and not force:
            raise PromotionRefused(gate)
        return gate

    def reject(self, model_id: str, reasons: list[str], gate: dict[str, Any]) -> None:
        """Record that `model_id` was refused (status "rejected", a "rejected" event with `reasons` and the
        `gate` decision that refused it), so a refused challenger is visible as such."""
        check_model_id(model_id)
        if not reasons or not all(isinstance(r, str) and r for r in reasons):
            raise UserError(f"rejecting {model_id} needs at least one reason (a non-empty string)")
        with self._edit() as state:
            self._reject(state, model_id, list(reasons), gate)

    def _reject(self, state: dict[str, Any], model_id: str, reasons: list[str], gate: dict[str, Any]) -> None:
        entry = self.entry(model_id, state)
        if state["champion"] == model_id:
            raise UserError(f"{model_id} is the champion: roll it back (`mmcl models rollback`) instead of rejecting it")
        entry["status"], entry["rejected_at"] = REJECTED, _now()
        state["events"].append({"time": _now(), "action": "rejected", "model": model_id,
                                "champion": state["champion"], "reasons": reasons, "gate": gate})

    def rollback(self, *, by: str | None = None, reason: str | None = None) -> tuple[str, str]:
        """Restore the previous champion; returns (rolled back id, restored id). `by` and `reason` (who, why)
        are kept in the rollback event."""
        with self._edit() as state:
            history = state["history"]
            if len(history) < 2:
                raise UserError(f"no previous champion to roll back to (history: {history or 'empty'})")
            current = history.pop()
            restored = history[-1]
            state["models"][current]["status"] = ROLLED_BACK
            state["models"][restored]["status"] = CHAMPION
            state["champion"] = restored
            state["events"].append({"time": _now(), "action": "rollback", "model": restored, "from": current,
                                    "by": by, "reason": reason})
        return current, restored
