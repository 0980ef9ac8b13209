"""Model lineage and the Markdown model card: for any model, which data, code, config, teacher and
evaluation produced it.

A model lineage record is a JSON file in the lineage store (mmcl.lineage, kind "model", key = model id):

    {"model": id, "run_dir", "created", "config_hash", "config": {...resolved...},
     "code": {"rev", "dirty", "mmcl_sha256"}, "dataset": {"md5", "source_drops", "validation", "row_counts"},
     "teacher": {...} | null, "training": {"global_step", "fit_seconds", ...}, "evaluation": {kind: summary}}

Importing this module registers the "model" kind with mmcl.lineage, so `mmcl lineage model <id>` prints
`format_model(record)` (the `mmcl models` CLI imports it when the parser is built).

    record = model_lineage("tiny-1ab7", "runs/tiny-1ab7", dataset=LineageStore().read("dataset", md5))
    record = add_evaluation(record, "sts", {"avg": 71.2, ...});  write_model_lineage(record)
    Path("MODEL_CARD.md").write_text(render_model_card(record))
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mmcl.data.manifest import atomic_write_text
from mmcl.data.paths import REPO_ROOT
from mmcl.lineage import FORMATTERS, KINDS, LineageStore, git_revision

KINDS.setdefault("model", "models")


def mmcl_source_sha256(package: Path = REPO_ROOT / "mmcl") -> str:
    """sha256 over the package's .py files (path + bytes): the code version even in a dirty tree."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _dataset_summary(dataset: dict[str, Any] | None) -> dict[str, Any] | None:
    if not dataset:
        return None
    validation = dataset.get("validation") or {}
    return {"md5": dataset.get("md5"), "dataset_dir": dataset.get("dataset_dir"),
            "previous_md5": dataset.get("previous_md5"), "source_drops": dataset.get("source_drops", []),
            "validation": {"totals": validation.get("totals"), "rejected_drops": validation.get("rejected_drops", []),
                           "drops": [{k: d.get(k) for k in ("drop", "status", "rows", "accepted", "quarantined",
                                                             "failed_checks")} for d in validation.get("drops", [])]},
            "row_counts": dataset.get("row_counts"), "dvc_remote": dataset.get("dvc_remote")}


def model_lineage(model_id: str, run_dir: str | Path, *, dataset: dict[str, Any] | None = None,
                  teacher: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
                  code: dict[str, Any] | None = None) -> dict[str, Any]:
    """The lineage record of a trained run (config and training metrics read from the run directory).

    Args:
        dataset: the dataset version's lineage record (mmcl.lineage.dataset_record), summarised here.
        teacher: what the KDMCSE teacher was (name, embedding files, shape); default: what training recorded
            in metrics.json (None when the objective read no teacher).
        training: training metrics; default: the run's metrics.json without the per-step detail.
        code: {"rev", "dirty", "mmcl_sha256"}; default: measured now from the checkout.
    """
    run = Path(run_dir)
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) if (run / "config.yaml").is_file() else None
    if training is None and (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        training = {k: metrics.get(k) for k in ("global_step", "epochs", "fit_seconds", "train_samples_per_second",
                                                "splits", "resumed_from_step")}
        if teacher is None:  # the teacher training actually read (None when its objective uses none)
            teacher = metrics.get("teacher")
    if code is None:
        code = {**git_revision(REPO_ROOT), "mmcl_sha256": mmcl_source_sha256()}
    config_hash = (run / "config_hash.txt").read_text().strip() if (run / "config_hash.txt").is_file() else None
    return {"model": model_id, "run_dir": str(run.resolve()), "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config_hash": config_hash, "config": config, "code": code, "dataset": _dataset_summary(dataset),
            "teacher": teacher, "training": training, "evaluation": {}}


def add_evaluation(record: dict[str, Any], kind: str, summary: dict[str, Any]) -> dict[str, Any]:
    """A copy of `record` with evaluation `kind` (sts, senteval, retrieval, ...) set to `summary`."""
    return {**record, "evaluation": {**record.get("evaluation", {}), kind: summary}}


def write_model_lineage(record: dict[str, Any], store: str | Path | None = None) -> Path:
    """Write (or update: evaluations arrive after training) the model's lineage record."""
    return LineageStore(store).write("model", record["model"], record, overwrite=True)


def read_model_lineage(model_id: str, store: str | Path | None = None) -> dict[str, Any]:
    return LineageStore(store).read("model", model_id)


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else "–" if value is None else str(value)


def _eval_lines(evaluation: dict[str, Any]) -> list[str]:
    lines = []
    for kind, summary in sorted(evaluation.items()):
        scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        lines.append(f"| {kind} | " + ", ".join(f"{k} {_fmt(v)}" for k, v in scalars.items())
                     + f" | {summary.get('protocol', '')} |")
    return lines


def render_model_card(record: dict[str, Any], registry_entry: dict[str, Any] | None = None) -> str:
    """The Markdown model card of a lineage record (plus its registry status when given)."""
    cfg, code, data = record.get("config") or {}, record.get("code") or {}, record.get("dataset") or {}
    modalities = (cfg.get("data") or {}).get("modalities") or []
    encoders = {m: e for m, e in ((cfg.get("model") or {}).get("encoders") or {}).items() if m in modalities}
    train = cfg.get("train") or {}
    lines = [f"# Model card: {record['model']}", ""]
    if registry_entry:
        lines += [f"**Registry status:** {registry_entry.get('status')}"
                  + (f" (promoted {registry_entry['promoted_at']})" if registry_entry.get("promoted_at") else ""), ""]
    lines += [
        "## What it is",
        f"- Modalities: {', '.join(modalities)}; embedding width "
        f"{(cfg.get('model') or {}).get('embed_dim')}; objective `{(cfg.get('objective') or {}).get('name')}`",
        *[f"- {m} encoder: `{e.get('name')}` {e.get('options', {})}{' (frozen)' if e.get('freeze') else ''}"
          for m, e in encoders.items()],
        f"- Training: {train.get('max_epochs')} epoch(s), lr {train.get('lr')}, batch "
        f"{(cfg.get('data') or {}).get('batch_size')}, seed {cfg.get('seed')}; "
        f"{_fmt((record.get('training') or {}).get('global_step'))} steps in "
        f"{_fmt((record.get('training') or {}).get('fit_seconds'))} s",
        f"- Run directory: `{record.get('run_dir')}` (config hash {record.get('config_hash')})", "",
        "## Data", f"- Dataset version (DVC md5): `{data.get('md5')}`",
        f"- Source drops: {', '.join(data.get('source_drops') or []) or '–'}",
        f"- Validation: {((data.get('validation') or {}).get('totals'))}; rejected drops: "
        f"{[d.get('drop') for d in (data.get('validation') or {}).get('rejected_drops', [])] or 'none'}",
        f"- Rows: {data.get('row_counts')}", "",
        "## Teacher", *_teacher_lines(record), "",
        "## Evaluation", "| evaluation | figures | protocol |", "|---|---|---|", *_eval_lines(record.get("evaluation", {})),
        "", "## Code", f"- git revision {code.get('rev') or '(none: ' + str(code.get('reason', 'unknown')) + ')'}{' (dirty tree)' if code.get('dirty') else ''}",
        f"- mmcl sources sha256 {code.get('mmcl_sha256')}", "",
        "## Resolved config", "```yaml", yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def write_model_card(record: dict[str, Any], path: str | Path, registry_entry: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    atomic_write_text(path, render_model_card(record, registry_entry))
    return path


def _teacher_line(record: dict[str, Any]) -> str:
    teacher = record.get("teacher")
    if not teacher:
        objective = ((record.get("config") or {}).get("objective") or {}).get("name")
        return f"none (objective {objective} trained without a teacher)"
    return f"{teacher.get('name')} ({teacher.get('model', '')})"


def _teacher_lines(record: dict[str, Any]) -> list[str]:
    teacher = record.get("teacher")
    lines = [f"- {_teacher_line(record)}"]
    for modality, file in sorted(((teacher or {}).get("files") or {}).items()):
        lines.append(f"- {modality} rows read by training: `{file}`")
    return lines


def format_model(record: dict[str, Any]) -> str:
    """Terminal view for `mmcl lineage model <id>`."""
    data, code = record.get("dataset") or {}, record.get("code") or {}
    lines = [f"model {record['model']}  ({record.get('run_dir')})",
             f"  dataset: {data.get('md5') or '(unknown)'} from drops {data.get('source_drops') or []}",
             f"  validation: {(data.get('validation') or {}).get('totals')}",
             f"  code: git {code.get('rev') or '(none)'}{' (dirty)' if code.get('dirty') else ''}, "
             f"mmcl sha256 {str(code.get('mmcl_sha256'))[:16]}",
             f"  config: hash {record.get('config_hash')}, objective "
             f"{((record.get('config') or {}).get('objective') or {}).get('name')}",
             f"  teacher: {_teacher_line(record)}"]
    for kind, summary in sorted((record.get("evaluation") or {}).items()):
        scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        lines.append(f"  eval {kind}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in scalars.items()))
    return "\n".join(lines)


FORMATTERS.setdefault("model", format_model)
