"""The environment-selected training launcher: MMCL_ENV=local -> Pipes subprocess, MMCL_ENV=k8s -> a GPU pod
through dagster-k8s's PipesK8sClient (its pod spec is built here and checked without a cluster); rank-0-only
reporting under DDP; the workspace's DVC remote on object storage by config."""

import sys
import types

import dagster as dg
import pytest

from orchestration.k8s_pipes import (
    GPU_RESOURCE,
    PipesK8sTrainingClient,
    TrainingPod,
    pod_command,
    training_pod_spec,
)
from orchestration.pipes_entry import is_reporting_rank
from orchestration.resources import MmclWorkspace, build_resources

K8S_ENV = {"MMCL_TRAIN_IMAGE": "registry.example.com/mmcl/mmcl-train:abc123", "MMCL_TRAIN_GPUS": "4",
           "MMCL_K8S_NAMESPACE": "ml", "MMCL_GPU_NODE_SELECTOR": "nvidia.com/gpu.product=H100,pool=gpu",
           "MMCL_TRAIN_SECRETS": "mmcl-object-store,wandb", "MMCL_WORKSPACE": "/workspace"}
LOCAL_COMMAND = [sys.executable, "-m", "orchestration.pipes_entry", "train", "--config", "/opt/mmcl/configs/demo.yaml",
                 "--set", "runs_dir=/workspace/runs"]


def test_pod_spec_requests_gpus_mounts_workspace_and_reads_secrets():
    pod = TrainingPod.from_env(K8S_ENV)
    spec = training_pod_spec(pod)
    (container,) = spec["containers"]
    assert container["resources"]["limits"][GPU_RESOURCE] == 4 == container["resources"]["requests"][GPU_RESOURCE]
    assert {"mountPath": "/workspace", "name": "workspace"} in container["volumeMounts"]
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "mmcl-workspace"}} in spec["volumes"]
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == ["mmcl-object-store", "wandb"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "H100", "pool": "gpu"}
    assert spec["restartPolicy"] == "Never" and spec["tolerations"][0]["key"] == GPU_RESOURCE
    assert pod.namespace == "ml" and "serviceAccountName" not in spec


def test_pod_command_one_gpu_python_several_torchrun():
    assert pod_command(LOCAL_COMMAND, 1) == ["python", *LOCAL_COMMAND[1:]]
    ddp = pod_command(LOCAL_COMMAND, 4)
    assert ddp[:5] == ["torchrun", "--standalone", "--nnodes=1", "--nproc-per-node=4", "-m"]
    assert ddp[5:5 + len(LOCAL_COMMAND) - 2] == LOCAL_COMMAND[2:]
    assert ddp[-4:] == ["--set", "train.strategy=ddp", "--set", "train.devices=4"]
    with pytest.raises(ValueError):
        pod_command(["bash", "-c", "x"], 1)


def test_missing_image_is_a_clear_error():
    with pytest.raises(ValueError, match="MMCL_TRAIN_IMAGE"):
        TrainingPod.from_env({})


def test_environment_selects_the_pipes_client(tmp_path, monkeypatch):
    local = build_resources(workspace=str(tmp_path), profile="tiny", environment="local")
    assert isinstance(local["pipes"], dg.PipesSubprocessClient)
    for key, value in K8S_ENV.items():
        monkeypatch.setenv(key, value)
    k8s = build_resources(workspace=str(tmp_path), profile="tiny", environment="k8s")
    assert isinstance(k8s["pipes"], PipesK8sTrainingClient) and k8s["pipes"].pod.gpus == 4
    assert k8s["pipes"].env["MMCL_MODEL_STORE"] == str(tmp_path.resolve() / "models")  # same paths as the run pod
    with pytest.raises(ValueError, match="known environments"):
        build_resources(workspace=str(tmp_path), environment="cloud")


def test_k8s_definitions_bind_and_launch_through_dagster_k8s(tmp_path, monkeypatch):
    """The code location loads with MMCL_ENV=k8s, and the client hands dagster-k8s the pod it built.
    dagster-k8s is only in the user-code image: a recording stand-in takes its place here."""
    from orchestration.definitions import build_defs

    for key, value in K8S_ENV.items():
        monkeypatch.setenv(key, value)
    defs = build_defs(workspace=str(tmp_path), profile="tiny", environment="k8s")
    assert defs.resolve_job_def("retrain_job") is not None  # trained_model's `pipes` binds to the k8s client
    calls = []

    class RecordingPipesK8sClient:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def run(self, **kwargs):
            calls.append(("run", kwargs))
            return "invocation"

    monkeypatch.setitem(sys.modules, "dagster_k8s", types.SimpleNamespace(PipesK8sClient=RecordingPipesK8sClient))
    client = defs.resources["pipes"]
    assert client.run(context="ctx", command=LOCAL_COMMAND, extras={"dataset_md5": "x"}) == "invocation"
    (_, init), (_, run) = calls
    assert init == {"load_incluster_config": True}
    assert run["image"] == K8S_ENV["MMCL_TRAIN_IMAGE"] and run["namespace"] == "ml"
    assert run["command"][0] == "torchrun" and run["extras"] == {"dataset_md5": "x"}
    assert run["base_pod_spec"] == training_pod_spec(client.pod)
    assert run["env"]["PYTHONPATH"]  # mmcl's child environment travels with the pod


@pytest.mark.parametrize("env, reports", [
    ({}, True),                                           # no DDP
    ({"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0"}, True),  # torchrun, global rank 0
    ({"RANK": "3", "LOCAL_RANK": "3"}, False),            # torchrun, another GPU
    ({"RANK": "4", "LOCAL_RANK": "0", "GROUP_RANK": "1"}, False),  # torchrun, first GPU of node 1
    ({"LOCAL_RANK": "1"}, False),                         # Lightning's own launcher, GPU 1
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),       # Lightning's launcher on node 1
])
def test_only_global_rank_zero_reports(env, reports):
    assert is_reporting_rank(env) is reports


def test_dvc_remote_on_object_storage_by_config(tmp_path):
    ws = MmclWorkspace(root=str(tmp_path / "ws"), dvc_remote="s3://mmcl-datasets/dvc",
                       dvc_remote_endpoint="http://127.0.0.1:9000")
    ws.ensure_dvc()
    config = (tmp_path / "ws" / ".dvc" / "config").read_text()
    assert "remote = store" in config
    assert "url = s3://mmcl-datasets/dvc" in config and "endpointurl = http://127.0.0.1:9000" in config
    assert "secret" not in config and "access_key" not in config  # credentials stay in the environment
