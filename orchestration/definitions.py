"""The Dagster code location: `dagster dev -m orchestration.definitions` (or `make ui`).

Definitions are discovered in orchestration/defs/ (dg layout: one folder per domain: data, training,
evaluation, monitoring); resources come from orchestration.resources for the environment named by
MMCL_ENV (local), the size profile MMCL_PROFILE (demo | tiny) and the workspace MMCL_WORKSPACE.
"""

from typing import Any

import dagster as dg

import orchestration.defs
from orchestration.defs.training.jobs import build_retrain_job
from orchestration.resources import REPO_ROOT, build_resources


def build_defs(**resource_args: Any) -> dg.Definitions:
    """All definitions with the resources of `build_resources(**resource_args)` (tests pass a tmp workspace
    and profile="tiny"; the code location uses the environment variables)."""
    discovered = dg.components.load_defs(orchestration.defs, project_root=REPO_ROOT)
    resources = build_resources(**resource_args)
    profile = resources["profile"]
    # local: a run's steps one after another in its worker process (2 cores: three evaluations in parallel
    # would each import torch and fight for the same cores); training is its own process through Pipes
    local = dg.Definitions(resources=resources, executor=dg.in_process_executor,
                           jobs=[build_retrain_job(profile.train_config, profile.train_overrides)])
    return dg.Definitions.merge(discovered, local)


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs()
