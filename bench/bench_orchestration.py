"""Orchestration overhead: the whole graph through Dagster against the same mmcl steps called directly.

    .venv/bin/python bench/bench_orchestration.py [--profile tiny] [--drops 2] [--per-drop 24] [--out bench/out]

Both paths work on the same landed drops, each in a fresh workspace (its own DVC repo, caches and registry):
  dagster  full_cycle_job, then one more drop and ingest_job, in-process on a SQLite DAGSTER_HOME
  direct   the same mmcl functions and commands in the same order, in one plain Python process
A first direct run (untimed) warms the OS file cache and the packaged model files for both; then the two
paths alternate for --rounds rounds (the machine is shared: the fastest round of each path is compared).
Console logs at INFO for both (every Dagster event is still written to the run's event log). The fixed
start-up cost (import dagster, load the definitions, open the instance) is measured in a fresh process.
Reported: wall seconds per path, ratio dagster/direct, and ratio after subtracting the start-up cost.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _key, _value in {"DAGSTER_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)

from orchestration.demo import land  # noqa: E402
from orchestration.resources import REPO_ROOT, MmclCli, MmclProfile, MmclWorkspace, build_resources  # noqa: E402


def direct_cycle(ws: MmclWorkspace, profile: MmclProfile) -> None:
    """full_cycle_job's steps without Dagster: same functions, same commands, same order."""
    from mmcl.data.landing import ingest_drops
    from mmcl.data.shards import export_flickr_layout
    from mmcl.data.versioning import version_dataset
    from mmcl.lineage import record_key
    from mmcl.validate.gate import Areas, run_gate
    from mmcl.validate.report import write_report
    from orchestration.defs.evaluation.protocols import evaluate
    from orchestration.model_records import record_training, registry

    ingest_drops([ws.landing], ws.path("raw"), ws.path("rejected", "ingest"))
    pending = [p for p in sorted(ws.path("raw").iterdir()) if not ws.path("validated", p.name).exists()]
    areas = Areas(ws.path("validated"), ws.path("quarantine"), ws.path("rejected", "validate"))
    dataset = ws.dataset if (ws.dataset / "index.jsonl").is_file() else None
    write_report(ws.path("reports", "validation.json"), run_gate(pending, areas=areas, dataset_dir=dataset,
                                                                 media_check=profile.media_check))
    ws.ensure_dvc()
    record = version_dataset(ws.path("validated"), ws.dataset, shard_size=profile.shard_size, lineage_dir=ws.lineage,
                             rejected_root=ws.path("rejected", "validate"))
    from mmcl.data.versioning import DvcRepo  # the dataset checks: dvc status, local and remote

    DvcRepo(ws.path()).status("dataset.dvc")
    DvcRepo(ws.path()).run("status", "--cloud", "--json", "dataset.dvc")
    view = ws.path("train_views", record_key(record["md5"]))
    export_flickr_layout(ws.dataset, view)
    from mmcl.config import load_config
    from mmcl.train.teachers import prepare_teacher

    sets = [*profile.train_overrides, f"data.data_dir={view}", f"runs_dir={ws.path('runs')}"]
    # what teacher_scores does: the profile config's teacher, if it has one, under training's cache key
    prepare_teacher(load_config(REPO_ROOT / profile.train_config,
                                [*sets, f"data.teacher.cache_dir={ws.path('cache', 'teacher')}"]).data)
    done = subprocess.run([sys.executable, "-m", "mmcl", "train", "--config", str(REPO_ROOT / profile.train_config),
                           *[a for s in sets for a in ("--set", s)]], cwd=REPO_ROOT, env={**os.environ, **ws.child_env()},
                          capture_output=True, text=True, check=True)
    run_dir = json.loads(done.stdout.strip().splitlines()[-1])["run_dir"]
    model_id = Path(run_dir).name
    record_training(ws, model_id, run_dir, record["md5"])
    mmcl = MmclCli(mode="inprocess")
    for kind in ("retrieval", "senteval", "sts"):
        evaluate(kind, model_id, ws, profile, mmcl, None)
    registry(ws).promote(model_id, profile.tolerances())
    direct_reference(ws, profile, model_id, record)


def direct_reference(ws: MmclWorkspace, profile: MmclProfile, model_id: str, record: dict) -> None:
    import random

    from mmcl.data.flickr import load_flickr_triples
    from mmcl.lineage import record_key
    from orchestration.defs.monitoring.assets import _embed

    records = sorted(load_flickr_triples(ws.path("train_views", record_key(record["md5"]))), key=lambda r: r.image_id)
    records = random.Random(0).sample(records, min(profile.probe_max_rows, len(records)))
    out = ws.path("monitoring", "reference", model_id, "text.npy")
    _embed(str(ws.models / model_id / "model.pt"), [r.captions[0] for r in records], out)
    (ws.path("monitoring") / "reference.json").write_text(json.dumps(
        {"model_file": str(ws.models / model_id / "model.pt"), "embeddings": str(out), "champion": model_id,
         "source_drops": record["source_drops"]}))


def direct_ingest(ws: MmclWorkspace, profile: MmclProfile) -> None:
    """ingest_job's steps without Dagster (the new drop: ingest, gate, version, drift)."""
    from mmcl.data.landing import ingest_drops
    from mmcl.data.shards import export_flickr_layout
    from mmcl.data.versioning import DvcRepo, version_dataset
    from mmcl.lineage import record_key
    from mmcl.validate.gate import Areas, run_gate
    from orchestration.defs.monitoring.assets import _drift_args, _embed, _new_captions

    ingest_drops([ws.landing], ws.path("raw"), ws.path("rejected", "ingest"))
    pending = [p for p in sorted(ws.path("raw").iterdir()) if not ws.path("validated", p.name).exists()]
    run_gate(pending, areas=Areas(ws.path("validated"), ws.path("quarantine"), ws.path("rejected", "validate")),
             dataset_dir=ws.dataset, media_check=profile.media_check)
    record = version_dataset(ws.path("validated"), ws.dataset, shard_size=profile.shard_size, lineage_dir=ws.lineage)
    DvcRepo(ws.path()).status("dataset.dvc")
    DvcRepo(ws.path()).run("status", "--cloud", "--json", "dataset.dvc")
    export_flickr_layout(ws.dataset, ws.path("train_views", record_key(record["md5"])))
    reference = json.loads((ws.path("monitoring") / "reference.json").read_text())
    new = [d for d in record["source_drops"] if d not in reference["source_drops"]]
    folder = ws.path("monitoring", "checks", "direct")
    _embed(reference["model_file"], _new_captions(ws, new), folder / "current.npy")
    MmclCli(mode="inprocess").run(_drift_args(reference["embeddings"], str(folder / "current.npy"),
                                              folder / "drift.json", profile, ws, "direct"))


def cpu_seconds() -> float:
    """user + system CPU of this process and its finished children (training subprocesses, dvc)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_direct(root: Path, args: argparse.Namespace) -> tuple[float, float]:
    resources = build_resources(workspace=str(root), profile=args.profile)
    ws, profile = resources["workspace"], resources["profile"]
    land(ws.landing, 1, args.drops, args.per_drop)
    land(ws.landing, args.drops + 1, args.drops + 1, args.per_drop)  # landed now, ingested only in phase 2
    extra = ws.landing / f"drop-{args.drops + 1:04d}"
    extra.rename(extra.with_name(f".{extra.name}"))  # hidden: not a drop yet
    start, cpu = time.perf_counter(), cpu_seconds()
    direct_cycle(ws, profile)
    extra.with_name(f".{extra.name}").rename(extra)
    direct_ingest(ws, profile)
    return time.perf_counter() - start, cpu_seconds() - cpu


def timed_dagster(root: Path, home: Path, args: argparse.Namespace) -> tuple[float, float]:
    from orchestration.definitions import build_defs
    from orchestration.instance import open_instance

    land(root / "landing", 1, args.drops, args.per_drop)
    land(root / "landing", args.drops + 1, args.drops + 1, args.per_drop)  # as in timed_direct
    extra = root / "landing" / f"drop-{args.drops + 1:04d}"
    extra.rename(extra.with_name(f".{extra.name}"))
    start, cpu = time.perf_counter(), cpu_seconds()
    instance = open_instance(home)
    defs = build_defs(workspace=str(root), profile=args.profile)
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    ok = defs.resolve_job_def("full_cycle_job").execute_in_process(run_config=quiet, instance=instance,
                                                                   raise_on_error=False).success
    extra.with_name(f".{extra.name}").rename(extra)
    ok &= defs.resolve_job_def("ingest_job").execute_in_process(run_config=quiet, instance=instance,
                                                                raise_on_error=False).success
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    instance.dispose()
    if not ok:
        raise SystemExit("the Dagster run failed: no timing")
    return elapsed, cpu


def startup_seconds(home: Path) -> float:
    """import dagster + build the definitions + open the instance, in a fresh process (median of 3)."""
    code = ("import time; t=time.perf_counter(); from orchestration.definitions import build_defs; "
            f"from orchestration.instance import open_instance; build_defs(); open_instance({str(home)!r}); "
            "print(time.perf_counter()-t)")
    runs = sorted(float(subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1]) for _ in range(3))
    return runs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", choices=("tiny", "demo"))
    parser.add_argument("--drops", type=int, default=2)
    parser.add_argument("--per-drop", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    directs, dagsters = [], []
    with tempfile.TemporaryDirectory(prefix="bench_orch_") as tmp:
        tmp = Path(tmp)
        timed_direct(tmp / "warmup", args)
        for i in range(args.rounds):
            directs.append(timed_direct(tmp / f"direct{i}", args))
            dagsters.append(timed_dagster(tmp / f"dagster{i}", tmp / f"home{i}", args))
        startup = startup_seconds(tmp / "home_startup")
    direct, dagster = min(w for w, _ in directs), min(w for w, _ in dagsters)
    direct_cpu, dagster_cpu = min(c for _, c in directs), min(c for _, c in dagsters)
    result = {"profile": args.profile, "drops": args.drops, "per_drop": args.per_drop, "rounds": args.rounds,
              "direct_wall_s": [round(w, 1) for w, _ in directs], "dagster_wall_s": [round(w, 1) for w, _ in dagsters],
              "direct_cpu_s": [round(c, 1) for _, c in directs], "dagster_cpu_s": [round(c, 1) for _, c in dagsters],
              "ratio_wall": round(dagster / direct, 3), "ratio_cpu": round(dagster_cpu / direct_cpu, 3),
              "startup_s": round(startup, 2), "ratio_wall_after_startup": round((dagster - startup) / direct, 3),
              "cpus": os.cpu_count(),
              "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
