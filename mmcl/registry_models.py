"""Champion/challenger model registry: one JSON file in a store folder, changed under a file lock.

    models/registry.json        {"champion": id | null, "history": [ids, in the order they became champion],
                                 "models": {id: entry}, "events": [{"time", "action", "model", ...}]}
    models/<id>/model.pt        a hard link (or copy) of the run's model.pt, so rollback survives `rm -r runs/`
    models/<id>/config.yaml     the resolved config it was trained with; MODEL_CARD.md beside it

A trained model is registered as a *challenger*; its evaluations are recorded as named metrics, each with
the protocol that produced it (which sets, how many pairs), because numbers from different protocols are
not comparable. `promote` makes a challenger the champion only if, on every gated metric, it is not worse
than the champion beyond that metric's tolerance; `rollback` restores the previous champion.

    mmcl models list                     mmcl models promote tiny-1ab76797de8c
    mmcl models rollback                 (store: --store, else $MMCL_MODEL_STORE, else ./models)

Relations: the Dagster asset `promoted_model` calls `promote`; the blocking checks before it call `gate`
(orchestration/defs/evaluation). The model's lineage and card live in mmcl.model_card.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmcl.errors import UserError

ENV_STORE = "MMCL_MODEL_STORE"
DEFAULT_STORE = "models"
REGISTRY_FILE = "registry.json"
SCHEMA_VERSION = 1
CHALLENGER, CHAMPION, RETIRED, ROLLED_BACK = "challenger", "champion", "retired", "rolled_back"
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


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:  # another file system: copy
        shutil.copy2(src, dst)


class ModelRegistry:
    """The registry in `store` (default $MMCL_MODEL_STORE or ./models)."""

    def __init__(self, store: str | os.PathLike | None = None):
        self.root = Path(store or os.environ.get(ENV_STORE) or DEFAULT_STORE)
        self.file = self.root / REGISTRY_FILE

    # ---- storage
    def read(self) -> dict[str, Any]:
        if not self.file.is_file():
            return {"schema": SCHEMA_VERSION, "champion": None, "history": [], "models": {}, "events": []}
        try:
            return json.loads(self.file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.file}: not valid JSON ({exc}); restore it from a backup") from exc

    @contextlib.contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock: two runs never lose each other's changes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            yield state
            tmp = self.file.with_name(f".{self.file.name}.tmp")
            tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.file)

    def entry(self, model_id: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
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
        """Add a trained run as a challenger (idempotent: re-registering keeps status and metrics)."""
        run = Path(run_dir)
        model_file = run / "model.pt"
        if not model_file.is_file():
            raise UserError(f"{run} holds no model.pt: train it first (mmcl train ...)")
        folder = self.root / model_id
        _link_or_copy(model_file, folder / "model.pt")
        if (run / "config.yaml").is_file():
            shutil.copy2(run / "config.yaml", folder / "config.yaml")
        with self._edit() as state:
            old = state["models"].get(model_id, {})
            entry = {"id": model_id, "run_dir": str(run.resolve()), "model_file": str((folder / "model.pt").resolve()),
                     "status": old.get("status", CHALLENGER), "registered_at": old.get("registered_at", _now()),
                     "metrics": old.get("metrics", {}), **{k: v for k, v in info.items() if v is not None}}
            state["models"][model_id] = entry
            if not old:
                state["events"].append({"time": _now(), "action": "register", "model": model_id})
        return entry

    def record_metric(self, model_id: str, metric: str, value: float, protocol: str, source: str | None = None) -> None:
        """Store one evaluation result (replacing an older one of the same metric)."""
        with self._edit() as state:
            entry = self.entry(model_id, state)
            entry["metrics"][metric] = {"value": _finite(value), "protocol": protocol, "source": source, "at": _now()}

    def gate(self, model_id: str, tolerances: dict[str, float] | None = None,
             confidence: float = DEFAULT_CONFIDENCE) -> GateResult:
        """Compare `model_id` with the current champion on every gated metric (no change made).

        `tolerances` names the metrics to gate and their margins; a metric left out keeps its default
        margin (`--tolerance sts_avg=1` never drops the RSUM gate). `confidence` is the whole gate's: each
        of the m metrics is decided at 1 - (1 - confidence) / m (Bonferroni), so a challenger as good as the
        champion is rejected with probability at most 1 - confidence."""
        tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
        per_metric = 1.0 - (1.0 - confidence) / max(1, len(tolerances))
        state = self.read()
        challenger = self.entry(model_id, state)
        champ_id = state["champion"]
        if champ_id is None or champ_id == model_id:
            return GateResult(model_id, champ_id, True)
        champion = state["models"][champ_id]
        comparisons = [compare_metric(m, challenger["metrics"].get(m), champion["metrics"].get(m), tol, per_metric)
                       for m, tol in tolerances.items()]
        return GateResult(model_id, champ_id, all(c.passed for c in comparisons), comparisons)

    def promote(self, model_id: str, tolerances: dict[str, float] | None = None, *, force: bool = False,
                reason: str | None = None, confidence: float = DEFAULT_CONFIDENCE) -> GateResult:
        """Make `model_id` the champion if the gate passes (or `force`); raises PromotionRefused otherwise."""
        gate = self.gate(model_id, tolerances, confidence)
        if not gate.passed and not force:
            with self._edit() as state:
                state["events"].append({"time": _now(), "action": "refused", "model": model_id,
                                        "champion": gate.champion, "gate": gate.to_dict()})
            raise PromotionRefused(gate)
        with self._edit() as state:
            entry = self.entry(model_id, state)
            previous = state["champion"]
            if previous != model_id:
                if previous:
                    state["models"][previous]["status"] = RETIRED
                state["history"].append(model_id)
            state["champion"] = model_id
            entry["status"], entry["promoted_at"] = CHAMPION, _now()
            state["events"].append({"time": _now(), "action": "promote", "model": model_id, "previous": previous,
                                    "forced": force and not gate.passed, "reason": reason, "gate": gate.to_dict()})
        return gate

    def rollback(self) -> tuple[str, str]:
        """Restore the previous champion; returns (rolled back id, restored id)."""
        with self._edit() as state:
            history = state["history"]
            if len(history) < 2:
                raise UserError(f"no previous champion to roll back to (history: {history or 'empty'})")
            current = history.pop()
            restored = history[-1]
            state["models"][current]["status"] = ROLLED_BACK
            state["models"][restored]["status"] = CHAMPION
            state["champion"] = restored
            state["events"].append({"time": _now(), "action": "rollback", "model": restored, "from": current})
        return current, restored
