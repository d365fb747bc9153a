"""The deployment files (deploy/) agree with the server they deploy.

No container engine or cluster runs on these machines, so what can be checked without one is:
the files parse; the ports, flags, paths and health-check service names they use are the ones
`convscope serve` and the server have; the image's entry command is the package's; and the
Kubernetes objects name each other consistently.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib
import yaml

from convscope.cli import main as convscope_main
from convscope.rpc.server import SERVICE_NAME
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]
# Flags the manifests pass that land with another branch (issue 14: tokens); everything else
# must be a flag of this `convscope serve`.
PENDING_FLAGS = {"--token-file"}


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _one(instructions: list[tuple[str, str]], name: str) -> str:
    found = [arguments for instruction, arguments in instructions if instruction == name]
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def _manifests() -> dict[str, dict]:
    documents = [doc for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
    return {doc["kind"]: doc for doc in documents if doc}


def _serve_flags(capsys: pytest.CaptureFixture[str]) -> set[str]:
    with pytest.raises(SystemExit):
        convscope_main(["serve", "--help"])
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", capsys.readouterr().out))


def _option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_runs_the_packages_entry_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    instructions = _instructions(DEPLOY / name)
    entrypoint = json.loads(_one(instructions, "ENTRYPOINT"))
    command = json.loads(_one(instructions, "CMD"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["convscope"] and scripts["convscope"] == "convscope.cli:main"
    assert command[0] == "serve" and set(a for a in command if a.startswith("--")) <= _serve_flags(capsys)
    assert _one(instructions, "EXPOSE") == _option(command, "--port")
    assert _option(command, "--host") == "0.0.0.0"  # reachable from outside the container
    assert _option(command, "--store").startswith(_one(instructions, "VOLUME") + "/")
    for instruction, arguments in instructions:
        if instruction == "COPY":
            assert all((REPO / source).exists() for source in arguments.split()[:-1]), arguments


def test_cuda_image_has_the_runtime_onnxruntime_gpu_needs() -> None:
    base = _one(_instructions(DEPLOY / "Dockerfile.cuda"), "FROM")
    assert re.fullmatch(r"nvidia/cuda:12\.[\d.]+-cudnn-runtime-\S+", base), base  # onnxruntime-gpu ≥ 1.20: CUDA 12, cuDNN 9
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("onnxruntime-gpu") for d in dependencies)


def test_kubernetes_manifests_agree_with_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    objects = _manifests()
    assert set(objects) == {"Deployment", "Service", "PersistentVolumeClaim", "Secret"}
    deployment, service = objects["Deployment"], objects["Service"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "serve"
    assert {a for a in args if a.startswith("--")} - _serve_flags(capsys) <= PENDING_FLAGS
    port = int(_option(args, "--port"))
    (container_port,) = container["ports"]
    assert container_port["containerPort"] == port and _option(args, "--host") == "0.0.0.0"
    # Kubernetes' gRPC probes call grpc.health.v1.Health/Check with these service names.
    probes = {kind: container[kind]["grpc"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert all(probe["port"] == port for probe in probes.values())
    assert probes["readinessProbe"]["service"] == probes["startupProbe"]["service"] == SERVICE_NAME
    assert probes["livenessProbe"]["service"] == ""  # the server's overall status
    # The Service reaches that port, and selects this pod.
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == container_port["name"] and service_port["port"] == port
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    # The store lies on the claim, the token file in the Secret's volume.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["store"]["persistentVolumeClaim"]["claimName"] == objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert _option(args, "--store").startswith(mounts["store"] + "/")
    assert volumes["tokens"]["secret"]["secretName"] == objects["Secret"]["metadata"]["name"]
    token_file = Path(_option(args, "--token-file"))
    assert str(token_file.parent) == mounts["tokens"] and token_file.name in objects["Secret"]["stringData"]
    # The images run as this user (deploy/Dockerfile*: USER 10001).
    assert all(
        _one(_instructions(DEPLOY / name), "USER") == str(pod["spec"]["securityContext"]["runAsUser"]) for name in DOCKERFILES
    )


def test_ray_cluster_reads_the_data_where_the_server_does(capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/kubernetes/ray/: the RayCluster for dataset jobs on Ray, and the shared data volume."""
    documents = [yaml.safe_load(path.read_text()) for path in sorted((DEPLOY / "kubernetes" / "ray").glob("*.yaml"))]
    objects = {doc["kind"]: doc for doc in documents}
    assert set(objects) == {"RayCluster", "PersistentVolumeClaim"}
    cluster, claim = objects["RayCluster"], objects["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # the server and every worker at once
    # The server's command the manifest documents: it joins the cluster through the Service
    # KubeRay names <cluster>-head-svc, at the head's GCS port, and serves with that Ray.
    (line,) = re.findall(r"^#\s+(ray start .*)$", (DEPLOY / "kubernetes" / "ray" / "raycluster.yaml").read_text(), re.M)
    join, serve = line.split(" && exec ")
    head = cluster["spec"]["headGroupSpec"]
    (head_container,) = head["template"]["spec"]["containers"]
    gcs_port = next(p["containerPort"] for p in head_container["ports"] if p["name"] == "gcs")
    assert f"--address={cluster['metadata']['name']}-head-svc:{gcs_port}" in join.split() and "--num-cpus=0" in join.split()
    args = serve.split()[1:]
    assert args[0] == "serve" and {a for a in args if a.startswith("--")} <= _serve_flags(capsys)
    assert _option(args, "--ray-address") == "auto"
    assert head["rayStartParams"]["num-cpus"] == "0"  # job actors go to the workers
    groups = [head, *cluster["spec"]["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "convscope:ray"
        assert pod["securityContext"]["runAsUser"] == int(_one(_instructions(DEPLOY / "Dockerfile"), "USER"))
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [
            m
            for m in container["volumeMounts"]
            if volumes[m["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        ]
        assert mount["mountPath"] == _option(args, "--data-root")  # workers read the paths the server checked
    for group in cluster["spec"]["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        assert group["rayStartParams"]["num-cpus"] == str(container["resources"]["limits"]["cpu"])  # one actor per CPU
    # KubeRay's default probes call wget; the image built with EXTRAS=ray installs it.
    assert "wget" in next(arguments for instruction, arguments in _instructions(DEPLOY / "Dockerfile") if instruction == "RUN")
