"""`make demo` for the MLOps loop: the whole Dagster graph once on the embedded defaults, then one new drop.

    python -m orchestration.demo                       # profile demo: 4 drops of 200 triples, configs/demo.yaml
    python -m orchestration.demo --profile tiny --drops 2 --per-drop 24     # the same in ~3 min

1. drops 1..N land in the workspace's landing zone and full_cycle_job runs: ingest -> GX gate -> DVC version
   -> teacher -> training (Dagster Pipes subprocess) -> STS / SentEval / retrieval -> promotion gate ->
   reference embeddings -> drift;
2. drop N+1 lands and ingest_job runs (what new_drop_sensor starts): a new dataset version and a drift check
   of the new data against the champion's reference, with its Evidently report.
Runs are stored in $DAGSTER_HOME (default ./.dagster_home, SQLite), so `make ui` shows them afterwards.
"""

import argparse
import os
import sys
import time
from pathlib import Path

for _key, _value in {"DAGSTER_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestration.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=("demo", "tiny"), help="step sizes (resources.PROFILES)")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $MMCL_WORKSPACE or ./.mmcl_workspace)")
    parser.add_argument("--dagster-home", default=None, help="DAGSTER_HOME (default $DAGSTER_HOME or ./.dagster_home)")
    parser.add_argument("--drops", type=int, default=4, help="drops landed before the full cycle")
    parser.add_argument("--per-drop", type=int, default=200, help="Flickr8k triples per drop (1000 exist)")
    return parser.parse_args(argv)


def land(landing: Path, first: int, last: int, per_drop: int) -> list[str]:
    """Clean drops first..last, skipping any already landed (a rerun of the demo lands nothing twice)."""
    from mmcl.data.drops import simulate_drops

    names = []
    for index in range(first, last + 1):
        if not (landing / f"drop-{index:04d}").exists():
            simulate_drops(landing, n_drops=index, per_drop=per_drop, start=index)
        names.append(f"drop-{index:04d}")
    return names


def run_job(defs, instance, name: str, tags: dict[str, str]):
    start = time.perf_counter()
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}  # step events stay in the run's event log
    result = defs.resolve_job_def(name).execute_in_process(run_config=quiet, instance=instance, raise_on_error=False,
                                                           tags=tags)
    checks = result.get_asset_check_evaluations()
    failed = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed]
    status = "succeeded" if result.success else "FAILED"
    print(f"{name}: {status} in {time.perf_counter() - start:.0f} s, run {result.run_id}; "
          f"{len(checks) - len(failed)}/{len(checks)} checks passed" + (f"; failed: {failed}" if failed else ""),
          flush=True)
    return result.success and not failed


def report(ws, profile: str = "demo") -> None:
    from mmcl.registry_models import ModelRegistry
    from orchestration.helpers import stored_value

    champion = ModelRegistry(ws.models).champion()
    drift = stored_value(ws, "embedding_drift") or {}
    if champion and (Path(champion["run_dir"]) / "metrics.json").is_file():
        import json

        from mmcl.demo import retrieval_report

        print("\n" + retrieval_report(json.loads((Path(champion["run_dir"]) / "metrics.json").read_text())))
    print("\nwhere to look:")
    if champion:
        figures = {k: round(v["value"], 2) for k, v in champion["metrics"].items() if v.get("value") is not None}
        print(f"  champion         {champion['id']} {figures} (dataset {champion.get('dataset_md5')})")
        print(f"  model card       {ws.models / champion['id'] / 'MODEL_CARD.md'}")
        print(f"  lineage          python -m mmcl lineage model {champion['id']} --store {ws.lineage}")
    print(f"  registry         python -m mmcl models --store {ws.models} list   (promote / rollback)")
    print(f"  drift            {drift.get('status')}, drift_detected={drift.get('drift_detected')} on "
          f"{drift.get('new_drops')}: {drift.get('verdict')}")
    if drift.get("report"):
        print(f"  drift report     {drift['report']}  (history: evidently ui --workspace {ws.path('monitoring', 'evidently')})")
    print(f"  workspace        {ws.path()}   (DVC remote {ws.path('.dvc', 'local-remote')})")
    print(f"  Dagster UI       make ui DAGSTER_HOME={os.environ['DAGSTER_HOME']} MMCL_WORKSPACE={ws.path()} "
          f"MMCL_PROFILE={profile}   -> http://127.0.0.1:3000")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from orchestration.definitions import build_defs
    from orchestration.instance import ensure_dagster_home, open_instance

    home = ensure_dagster_home(args.dagster_home)
    os.environ["DAGSTER_HOME"] = str(home)
    instance = open_instance(home)
    defs = build_defs(workspace=args.workspace, profile=args.profile)
    ws = defs.resources["workspace"]
    print(f"workspace {ws.path()}, DAGSTER_HOME {home}, profile {args.profile}", flush=True)
    print(f"landed {land(ws.landing, 1, args.drops, args.per_drop)}", flush=True)
    ok = run_job(defs, instance, "full_cycle_job", {"mmcl/trigger": "demo"})
    if ok:
        print(f"landed {land(ws.landing, args.drops + 1, args.drops + 1, args.per_drop)}", flush=True)
        ok = run_job(defs, instance, "ingest_job", {"mmcl/trigger": "demo"})
    report(ws, args.profile)
    instance.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
