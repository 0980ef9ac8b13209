"""The production path of `trained_model`: Dagster Pipes launching the training as a Kubernetes GPU pod.

`build_resources(environment="k8s")` (MMCL_ENV=k8s) puts a `PipesK8sTrainingClient` where `local` has
`dg.PipesSubprocessClient`; the asset is the same and calls `pipes.run(command=..., context=..., extras=...)`
on either. The pod spec is plain data built here (`training_pod_spec`), so it is tested without a cluster
and without dagster-k8s, which is imported only when a pod is launched (it is in the user-code image,
deploy/Dockerfile.user-code, not in the local venv).

One pod per training: `gpus` GPUs on one node, one DDP process per GPU through torchrun; only rank 0
opens the Pipes channel (orchestration/pipes_entry.py). Several nodes need a multi-pod launcher (see
deploy/README.md): a single Pipes pod cannot span nodes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.definitions.resource_annotation import TreatAsResourceParam

ENTRY_MODULE = "orchestration.pipes_entry"
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's extended resource
CONTAINER = "mmcl-train"


@dataclass(frozen=True)
class TrainingPod:
    """What a training pod needs from the cluster. Defaults match deploy/helm/values.yaml."""

    image: str  # deploy/Dockerfile.train, pushed to your registry (a unique tag per build)
    namespace: str = "mmcl"
    gpus: int = 1
    cpu: str = "8"
    memory: str = "48Gi"
    shm: str = "16Gi"  # /dev/shm for DataLoader workers and NCCL; Docker's 64 MiB default is far too small
    workspace_claim: str = "mmcl-workspace"  # ReadWriteMany PVC shared with the run pods
    workspace_path: str = "/workspace"  # mounted at the same path as in the run pod: paths in args stay valid
    secrets: tuple[str, ...] = ("mmcl-object-store",)  # envFrom: DVC remote credentials, never in the repo
    service_account: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TrainingPod:
        """The pod from MMCL_TRAIN_IMAGE (required), MMCL_K8S_NAMESPACE, MMCL_TRAIN_GPUS, MMCL_TRAIN_CPU,
        MMCL_TRAIN_MEMORY, MMCL_WORKSPACE_CLAIM, MMCL_WORKSPACE (mount path), MMCL_TRAIN_SECRETS (comma list),
        MMCL_TRAIN_SERVICE_ACCOUNT, MMCL_GPU_NODE_SELECTOR (key=value,...)."""
        env = os.environ if environ is None else environ
        image = env.get("MMCL_TRAIN_IMAGE")
        if not image:
            raise ValueError("MMCL_ENV=k8s needs MMCL_TRAIN_IMAGE (the image built from deploy/Dockerfile.train)")
        selector = dict(kv.split("=", 1) for kv in env.get("MMCL_GPU_NODE_SELECTOR", "").split(",") if "=" in kv)
        secrets = tuple(s for s in env.get("MMCL_TRAIN_SECRETS", "mmcl-object-store").split(",") if s)
        return cls(image=image, namespace=env.get("MMCL_K8S_NAMESPACE", "mmcl"), gpus=int(env.get("MMCL_TRAIN_GPUS", "1")),
                   cpu=env.get("MMCL_TRAIN_CPU", "8"), memory=env.get("MMCL_TRAIN_MEMORY", "48Gi"),
                   workspace_claim=env.get("MMCL_WORKSPACE_CLAIM", "mmcl-workspace"),
                   workspace_path=env.get("MMCL_WORKSPACE", "/workspace"), secrets=secrets,
                   service_account=env.get("MMCL_TRAIN_SERVICE_ACCOUNT") or None, node_selector=selector)


def training_pod_spec(pod: TrainingPod) -> dict[str, Any]:
    """The base pod spec handed to dagster-k8s (which sets image, command and the Pipes env on container 0)."""
    container = {
        "name": CONTAINER,
        # requests = limits: the pod is Guaranteed QoS, so the kubelet never evicts a training for memory
        "resources": {"limits": {GPU_RESOURCE: pod.gpus, "cpu": pod.cpu, "memory": pod.memory},
                      "requests": {GPU_RESOURCE: pod.gpus, "cpu": pod.cpu, "memory": pod.memory}},
        "volumeMounts": [{"name": "workspace", "mountPath": pod.workspace_path},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
        "envFrom": [{"secretRef": {"name": s}} for s in pod.secrets],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Never",  # a failed training is retried by the asset's RetryPolicy (it resumes)
        "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": pod.workspace_claim}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": pod.shm}}],
        # GPU nodes are usually tainted so that only pods asking for GPUs land there
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    }
    if pod.node_selector:
        spec["nodeSelector"] = dict(pod.node_selector)
    if pod.service_account:
        spec["serviceAccountName"] = pod.service_account
    return spec


def pod_command(command: list[str], gpus: int) -> list[str]:
    """The asset's local command (`<python> -m orchestration.pipes_entry ARGS`) as the pod runs it: the
    image's python for one GPU, torchrun with one process per GPU for several (DDP on one node)."""
    if len(command) < 3 or command[1:3] != ["-m", ENTRY_MODULE]:
        raise ValueError(f"expected `<python> -m {ENTRY_MODULE} ...`, got {command[:3]}")
    args = command[3:]
    if gpus <= 1:
        return ["python", "-m", ENTRY_MODULE, *args]
    # strategy=ddp and devices=N explicitly: Lightning checks devices × num_nodes == torchrun's world size
    return ["torchrun", "--standalone", "--nnodes=1", f"--nproc-per-node={gpus}", "-m", ENTRY_MODULE, *args,
            "--set", "train.strategy=ddp", "--set", f"train.devices={gpus}"]


class PipesK8sTrainingClient(dg.PipesClient, TreatAsResourceParam):
    """`run(command=..., context=..., extras=...)` like dg.PipesSubprocessClient, in a GPU pod."""

    def __init__(self, pod: TrainingPod, env: dict[str, str] | None = None, load_incluster_config: bool = True):
        self.pod, self.env, self.load_incluster_config = pod, dict(env or {}), load_incluster_config

    def run(self, *, context: Any, extras: dict[str, Any] | None = None, command: list[str],
            **_: Any) -> dg.PipesClientCompletedInvocation:
        from dagster_k8s import PipesK8sClient  # only in the user-code image (deploy/Dockerfile.user-code)

        client = PipesK8sClient(load_incluster_config=self.load_incluster_config)
        return client.run(context=context, extras=extras, image=self.pod.image, namespace=self.pod.namespace,
                          command=pod_command(command, self.pod.gpus), env=self.env,
                          base_pod_spec=training_pod_spec(self.pod))
