"""The compose file, Helm values, Dockerfiles and k8s manifests parse and reference things that exist:
Dockerfiles and their COPY sources, images built here, ports, module names, env vars the code reads."""

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CODE_DIRS = ("mmcl", "orchestration")
EXTERNAL_IMAGES = {"postgres"}  # pulled, not built here


def load(name: str):
    return yaml.safe_load((DEPLOY / name).read_text())


def code_text() -> str:
    return "\n".join(p.read_text() for d in CODE_DIRS for p in (REPO / d).rglob("*.py"))


def image_name(ref: str) -> str:
    """registry.example.com/mmcl/mmcl-train:tag -> mmcl-train (compose interpolation stripped)."""
    return re.sub(r":[^/]*$", "", ref).rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def compose():
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def helm():
    return load("helm/values.yaml")


def built_images(compose) -> dict[str, Path]:
    """image name -> Dockerfile, for every compose service with a build section."""
    out = {}
    for svc in compose["services"].values():
        if "build" in svc:
            dockerfile = (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve()
            out[image_name(svc["image"])] = dockerfile
    return out


def test_compose_builds_from_dockerfiles_that_exist(compose):
    built = built_images(compose)
    assert set(built) == {"mmcl-user-code", "mmcl-train"}
    for dockerfile in built.values():
        assert dockerfile.is_file(), dockerfile
    for name, svc in compose["services"].items():
        assert image_name(svc["image"]) in set(built) | EXTERNAL_IMAGES, f"{name}: image {svc['image']} is built nowhere"


def test_dockerfile_copy_sources_and_commands_exist():
    for dockerfile in DEPLOY.glob("Dockerfile.*"):
        if dockerfile.suffix == ".dockerignore":
            continue
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                *sources, _dest = shlex.split(line)[1:]
                for src in sources:
                    assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} (build context = repository root)"
        cmd = re.search(r"^CMD (\[.*\])$", dockerfile.read_text(), re.M)
        args = yaml.safe_load(cmd.group(1))
        assert importlib.util.find_spec(args[args.index("-m") + 1]) is not None


def test_compose_code_server_workspace_and_ports(compose):
    services = compose["services"]
    workspace = load("workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["host"] in services
    command = services[workspace["host"]]["command"]
    assert int(command[command.index("-p") + 1]) == workspace["port"]
    module = command[command.index("-m") + 1]
    assert module == "orchestration.definitions" and importlib.util.find_spec(module) is not None
    assert f"EXPOSE {workspace['port']}" in (DEPLOY / "Dockerfile.user-code").read_text()
    # UIs on loopback only; the database publishes nothing
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    assert services["evidently"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "ports" not in services["postgres"] and "ports" not in services["code-server"]
    web = services["webserver"]["command"]
    assert web[web.index("-p") + 1] == "3000" and web[web.index("-w") + 1].endswith("workspace.yaml")
    # the Evidently UI reads the workspace folder embedding_drift writes
    assert "monitoring\", \"evidently\"" in (REPO / "orchestration/defs/monitoring/assets.py").read_text()
    evidently = services["evidently"]["command"]
    assert evidently[evidently.index("--workspace") + 1] == "/workspace/monitoring/evidently"


def test_compose_mounts_and_env(compose):
    services = compose["services"]
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).is_file(), source
            elif not source.startswith("$"):
                assert source in compose["volumes"], f"named volume {source} not declared"
    # every variable deploy/dagster.yaml reads is set for each Dagster process
    needed = set(re.findall(r"\{env: (\w+)\}", (DEPLOY / "dagster.yaml").read_text()))
    assert needed == {"MMCL_PG_HOST", "MMCL_PG_PORT", "MMCL_PG_USER", "MMCL_PG_PASSWORD", "MMCL_PG_DB"}
    for name in ("code-server", "webserver", "daemon"):
        assert needed <= set(services[name]["environment"]), name
    # no secret in the repository: the password is required from the environment (deploy/.env)
    assert services["webserver"]["environment"]["MMCL_PG_PASSWORD"].startswith("${MMCL_PG_PASSWORD:?")
    code = code_text()
    for var in services["code-server"]["environment"]:
        if var.startswith("MMCL_") and not var.startswith("MMCL_PG_"):
            assert f'"{var}"' in code, f"{var} is set in compose but read nowhere in mmcl/ or orchestration/"
    env_example = (DEPLOY / "env.example").read_text()
    assert re.search(r"^MMCL_PG_PASSWORD=$", env_example, re.M)  # the example carries no password


def test_helm_values_reference_this_project(helm, compose):
    built = built_images(compose)
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args == ["-m", "orchestration.definitions"]
    for ref in (deployment["image"]["repository"], helm["dagsterWebserver"]["image"]["repository"],
                helm["dagsterDaemon"]["image"]["repository"]):
        assert image_name(ref) == "mmcl-user-code"
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["MMCL_ENV"] == "k8s"
    assert image_name(env["MMCL_TRAIN_IMAGE"]) == "mmcl-train" and "mmcl-train" in built
    k8s_code = (REPO / "orchestration/k8s_pipes.py").read_text() + code_text()
    for var in env:
        assert f'"{var}"' in k8s_code, f"{var} is set in the Helm values but read nowhere"
    # the workspace claim, service accounts and secret line up with the manifests and the pod defaults
    pvc = load("k8s/workspace-pvc.yaml")
    assert pvc["metadata"]["name"] == env["MMCL_WORKSPACE_CLAIM"] == deployment["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    accounts = {d["metadata"]["name"] for d in yaml.safe_load_all((DEPLOY / "k8s/rbac.yaml").read_text())
                if d["kind"] == "ServiceAccount"}
    run_pod = helm["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    assert {run_pod["serviceAccountName"], env["MMCL_TRAIN_SERVICE_ACCOUNT"]} == accounts
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    assert helm["postgresql"]["enabled"] is False and "postgresqlPassword" not in helm["postgresql"]


def test_helm_and_compose_instance_settings_agree(helm):
    instance = load("dagster.yaml")
    queue = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert helm["concurrency"]["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert helm["dagsterDaemon"]["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
    assert helm["dagsterDaemon"]["runMonitoring"]["startTimeoutSeconds"] == instance["run_monitoring"]["start_timeout_seconds"]


def test_torchrun_script_is_valid_bash():
    script = DEPLOY / "train-ddp.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "-m orchestration.pipes_entry" in script.read_text()
