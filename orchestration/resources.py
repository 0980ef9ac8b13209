"""Resources: where the pipeline keeps its files, how big its steps are, and how mmcl commands run.

One set per environment (MMCL_ENV): `local` runs mmcl commands in the step's process and training as a
local subprocess through Dagster Pipes; `k8s` swaps only the Pipes client for a GPU pod launcher
(orchestration/k8s_pipes.py, configured by MMCL_TRAIN_IMAGE, MMCL_TRAIN_GPUS, ...; deploy/README.md) and
keeps the same assets. The workspace's DVC remote is the local default unless MMCL_DVC_REMOTE names one
(s3://bucket/prefix, gs://..., with MMCL_DVC_REMOTE_ENDPOINT for S3-compatible stores such as MinIO). The size profile (MMCL_PROFILE) is separate: `tiny` (tests, CI: seconds per step)
or `demo` (`make demo`: the demo configuration, ~20 min on 2 cores).

Nothing here imports torch or mmcl's heavy modules: the code location must load in ~1 s.
"""


import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_WORKSPACE, ENV_PROFILE, ENV_ENVIRONMENT = "MMCL_WORKSPACE", "MMCL_PROFILE", "MMCL_ENV"
ENV_DVC_REMOTE, ENV_DVC_ENDPOINT = "MMCL_DVC_REMOTE", "MMCL_DVC_REMOTE_ENDPOINT"
ENVIRONMENTS = ("local", "k8s")
OBJECT_STORE_REMOTE = "store"  # DVC remote name of MMCL_DVC_REMOTE
DEFAULT_WORKSPACE = REPO_ROOT / ".mmcl_workspace"
# offline, quiet, no telemetry: the same settings for every child process
CHILD_ENV = {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "DAGSTER_DISABLE_TELEMETRY": "1"}


class MmclWorkspace(dg.ConfigurableResource):
    """The folder tree one pipeline instance works in (landing zone to drift reports). It is its own DVC
    repository (local remote under .dvc/local-remote) so dataset versions never touch the project's git."""

    root: str = Field(default=str(DEFAULT_WORKSPACE),
                         description="Workspace folder: landing/, raw/, validated/, quarantine/, dataset/, runs/, "
                                     "models/ (registry), lineage/, evals/, monitoring/")
    dvc_remote: str | None = Field(default=None, description="DVC remote URL of dataset versions (s3://, gs://, "
                                   "azure://, ...); None: the local remote .dvc/local-remote inside the workspace")
    dvc_remote_endpoint: str | None = Field(default=None, description="endpoint URL of an S3-compatible store "
                                            "(MinIO, Ceph); credentials come from the environment, never from here")

    def path(self, *parts: str) -> Path:
        return Path(self.root).resolve().joinpath(*parts)

    @property
    def landing(self) -> Path:
        return self.path("landing")

    @property
    def dataset(self) -> Path:
        return self.path("dataset")

    @property
    def models(self) -> Path:
        return self.path("models")

    @property
    def lineage(self) -> Path:
        return self.path("lineage")

    def ensure_dvc(self) -> None:
        """`dvc init` (no SCM) + local default remote, once; then the object-store remote when one is set."""
        from mmcl.data.versioning import DvcRepo

        root = self.path()
        root.mkdir(parents=True, exist_ok=True)
        repo = DvcRepo(root)
        if not (root / ".dvc").is_dir():
            repo.init()
        if self.dvc_remote and repo.remote_url() != self.dvc_remote:
            repo.set_remote(self.dvc_remote, OBJECT_STORE_REMOTE)  # becomes the default: `dvc push` goes there
            if self.dvc_remote_endpoint:
                repo.run("remote", "modify", OBJECT_STORE_REMOTE, "endpointurl", self.dvc_remote_endpoint)

    def child_env(self) -> dict[str, str]:
        """Environment for mmcl child processes: stores of this workspace, offline settings."""
        return {**CHILD_ENV, "MMCL_LINEAGE_DIR": str(self.lineage), "MMCL_MODEL_STORE": str(self.models),
                "MMCL_CACHE_DIR": str(self.path("cache")), "PYTHONPATH": str(REPO_ROOT)}


class MmclProfile(dg.ConfigurableResource):
    """How big each step is. Evaluation protocols are recorded with every metric, so the promotion gate only
    compares numbers measured the same way."""

    name: str = Field(default="demo", description="profile name (tiny | demo)")
    train_config: str = Field(default="configs/demo.yaml", description="mmcl YAML config trained by trained_model")
    train_overrides: list[str] = Field(default=[], description="--set KEY=VALUE applied before the run config's")
    media_check: str = Field(default="full", description="validation media check: full | header | exists")
    max_quarantined_fraction: float = Field(
        default=0.2, description="a GX check blocks the pipeline (ERROR) when it quarantines more than this "
                                 "fraction of the new rows; fewer failing rows are quarantined with a WARN")
    shard_size: int = Field(default=256, description="records per tar shard of a dataset version")
    sts_sets: list[str] = Field(default=["sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr"],
                                   description="STS sets of sts_eval")
    sts_max_pairs: int | None = Field(default=None, description="first N pairs per STS subset (None: all)")
    senteval_tasks: list[str] = Field(default=["MR", "CR", "SUBJ", "MPQA", "TREC"],
                                         description="SentEval transfer tasks")
    senteval_max_samples: int | None = Field(default=1000, description="seeded N examples per task")
    senteval_folds: int = Field(default=5, description="cross-validation folds")
    retrieval_pair: str = Field(default="text:image", description="modalities of retrieval_eval")
    retrieval_max_images: int | None = Field(default=None, description="first N test images (None: all)")
    sts_tolerance: float = Field(default=0.0, description="promotion margin: a challenger is refused when its STS "
                                                          "avg is shown (paired bootstrap) to be more than this below "
                                                          "the champion's")
    rsum_tolerance: float = Field(default=0.0, description="promotion margin of RSUM, as sts_tolerance")
    promotion_confidence: float = Field(default=0.95, description="confidence of the promotion gate (both metrics "
                                                                  "together, Bonferroni)")
    probe_max_rows: int = Field(default=1000, description="reference set size (captions) for drift")
    drift_alpha: float = Field(default=0.05, description="drift test level")
    drift_permutations: int = Field(default=500, description="MMD pooled permutations")
    drift_report: bool = Field(default=True, description="write the Evidently HTML report + workspace snapshot")

    def tolerances(self) -> dict[str, float]:
        return {"sts_avg": self.sts_tolerance, "retrieval_rsum": self.rsum_tolerance}


PROFILES: dict[str, dict[str, Any]] = {
    "demo": {},
    "tiny": {
        "name": "tiny", "train_config": "configs/tiny.yaml",
        # text + image only, 3 steps: what is tested is the pipeline, not the model
        "train_overrides": ["data.modalities=[text,image]", "train.max_steps=3", "data.max_train_images=24",
                            "data.max_eval_images=8"],
        "sts_sets": ["stsb", "sickr"], "sts_max_pairs": 200, "senteval_tasks": ["MR"], "senteval_max_samples": 200,
        "senteval_folds": 2, "retrieval_max_images": 24, "probe_max_rows": 200, "drift_permutations": 200,
        "drift_report": False,
    },
}


class MmclCli(dg.ConfigurableResource):
    """Runs `mmcl <args>`: in this process (mode inprocess: no second torch import) or as `python -m mmcl`."""

    mode: str = Field(default="inprocess", description="inprocess | subprocess")

    def run(self, args: list[str], env: dict[str, str] | None = None, log: Any = None) -> str:
        """Run one mmcl command; returns its stdout; raises dg.Failure with its output on a non-zero exit."""
        if self.mode == "subprocess":
            done = subprocess.run([sys.executable, "-m", "mmcl", *args], cwd=REPO_ROOT, capture_output=True,
                                  text=True, env={**os.environ, **(env or {})})
            code, out, err = done.returncode, done.stdout, done.stderr
        else:
            from mmcl.cli import main

            buf_out, buf_err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
                code = main(args)
            out, err = buf_out.getvalue(), buf_err.getvalue()
        if log is not None:
            log.info(f"mmcl {' '.join(args)} -> exit {code}\n{out[-2000:]}")
        if code != 0:
            raise dg.Failure(description=f"`mmcl {' '.join(args)}` exited {code}",
                             metadata={"stderr": dg.MetadataValue.text(err[-4000:]),
                                       "stdout": dg.MetadataValue.text(out[-4000:])})
        return out


class JsonIOManager(dg.ConfigurableIOManager):
    """Asset values are small JSON documents (paths, md5s, ids, figures), one file per asset: readable
    with `cat`, and the big artefacts stay where mmcl wrote them."""

    base_dir: str = Field(description="folder of <asset>.json files")

    def _file(self, key: dg.AssetKey) -> Path:
        return Path(self.base_dir).joinpath(*key.path).with_suffix(".json")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        path = self._file(context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)

    def load_input(self, context: dg.InputContext) -> Any:
        path = self._file(context.asset_key)
        if not path.is_file():
            raise dg.Failure(f"{context.asset_key.to_user_string()} has not been materialised in this workspace "
                             f"({path} is missing): materialise it first")
        return json.loads(path.read_text())


def training_pipes_client(environment: str, ws: MmclWorkspace) -> dg.PipesClient:
    """How `trained_model` runs the training: a local subprocess, or a Kubernetes GPU pod (MMCL_ENV=k8s)."""
    if environment == "k8s":
        from orchestration.k8s_pipes import PipesK8sTrainingClient, TrainingPod

        return PipesK8sTrainingClient(TrainingPod.from_env(), env=ws.child_env())
    # training runs as its own process: a crash or OOM there never takes the run worker down
    return dg.PipesSubprocessClient(cwd=str(REPO_ROOT), env=ws.child_env())


def build_resources(workspace: str | None = None, profile: str | None = None, environment: str | None = None,
                    **profile_overrides: Any) -> dict[str, Any]:
    """The resources of one environment. Arguments default to $MMCL_WORKSPACE, $MMCL_PROFILE, $MMCL_ENV."""
    root = workspace or os.environ.get(ENV_WORKSPACE) or str(DEFAULT_WORKSPACE)
    profile_name = profile or os.environ.get(ENV_PROFILE, "demo")
    environment = environment or os.environ.get(ENV_ENVIRONMENT, "local")
    if profile_name not in PROFILES:
        raise ValueError(f"{ENV_PROFILE}={profile_name!r}: known profiles {sorted(PROFILES)}")
    if environment not in ENVIRONMENTS:
        raise ValueError(f"{ENV_ENVIRONMENT}={environment!r}: known environments {list(ENVIRONMENTS)}")
    ws = MmclWorkspace(root=str(Path(root).resolve()), dvc_remote=os.environ.get(ENV_DVC_REMOTE) or None,
                       dvc_remote_endpoint=os.environ.get(ENV_DVC_ENDPOINT) or None)
    return {
        "workspace": ws,
        "profile": MmclProfile(**{**PROFILES[profile_name], **profile_overrides}),
        "mmcl": MmclCli(mode="inprocess"),
        "pipes": training_pipes_client(environment, ws),
        "io_manager": JsonIOManager(base_dir=str(ws.path("dagster_io"))),
    }
