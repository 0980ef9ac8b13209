"""Where `make demo`'s time goes: per-step wall time of every run in a DAGSTER_HOME, from the instance's
event log (STEP_START / STEP_SUCCESS / STEP_FAILURE timestamps), as a Markdown table.

    MMCL_WORKSPACE=$(mktemp -d) DAGSTER_HOME=$(mktemp -d) .venv/bin/python -m orchestration.demo
    .venv/bin/python bench/bench_demo_steps.py $DAGSTER_HOME            # all runs, oldest first
    .venv/bin/python bench/bench_demo_steps.py $DAGSTER_HOME --json steps.json

A step still running (no end event yet) is shown as "running" with its time so far. Steps of one run
execute one after another in the demo (in-process executor), so their sum is close to the run's wall time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def step_times(home: Path) -> list[dict[str, Any]]:
    """[{run_id, job, status, wall_s, steps: [{step, status, seconds}]}] for every run, oldest first."""
    import dagster as dg
    from dagster import DagsterEventType

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        runs = sorted(instance.get_runs(), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
        out = []
        for run in runs:
            starts: dict[str, float] = {}
            steps: dict[str, dict[str, Any]] = {}
            first = last = None
            for entry in instance.all_logs(run.run_id):
                first = entry.timestamp if first is None else first
                last = entry.timestamp
                event = entry.dagster_event
                if event is None or event.step_key is None:
                    continue
                if event.event_type == DagsterEventType.STEP_START:
                    starts[event.step_key] = entry.timestamp
                    steps[event.step_key] = {"step": event.step_key, "status": "running", "seconds": None}
                elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                    status = "success" if event.event_type == DagsterEventType.STEP_SUCCESS else "failure"
                    steps[event.step_key] = {"step": event.step_key, "status": status,
                                             "seconds": entry.timestamp - starts[event.step_key]}
            for step in steps.values():
                if step["seconds"] is None:
                    step["seconds"] = time.time() - starts[step["step"]]
            if first is not None and not run.is_finished:
                last = time.time()
            out.append({"run_id": run.run_id, "job": run.job_name, "status": run.status.value,
                        "wall_s": (last - first) if first is not None else 0.0, "steps": list(steps.values())})
        return out
    finally:
        instance.dispose()


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = []
    for run in runs:
        total = sum(s["seconds"] for s in run["steps"])
        lines += [f"**{run['job']}** (run {run['run_id'][:8]}, {run['status']}): {run['wall_s']:.0f} s from first "
                  f"to last event, steps {total:.0f} s", "", "| step | s | % of steps | status |", "|---|---|---|---|"]
        for s in sorted(run["steps"], key=lambda s: -s["seconds"]):
            lines.append(f"| {s['step']} | {s['seconds']:.1f} | {100 * s['seconds'] / max(total, 1e-9):.0f} | "
                         f"{s['status']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dagster_home", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = step_times(args.dagster_home.resolve())
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    print(markdown(runs))


if __name__ == "__main__":
    main()
