"""deploy/: Dockerfile, compose file and Kubernetes manifests (no Docker engine here: the
files are validated, not run).

- Kubernetes manifests validate offline with ``kubernetes-validate --strict``; probes,
  resources, GPU request, selectors and names agree with each other.
- The compose file validates against the compose-spec schema (``check-jsonschema``'s
  vendored copy) and references only images that the Dockerfile builds or pinned public
  images, ports that the Dockerfile exposes and the commands listen on, ``HNDSR_*``
  variables that are fields of ``tileserver.settings.Settings`` (with values it accepts),
  and files that exist.
- The Dockerfile's stages, build args, COPY sources and commands exist; the CLI commands
  and options that the images, compose and Kubernetes run exist in ``hndsr-tiles``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tileserver.cli import app as cli_app
from tileserver.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent
SETTINGS_ENV = {f"HNDSR_{name.upper()}" for name in Settings.model_fields}


def tool(name: str) -> str:
    path = shutil.which(name) or BIN / name
    assert Path(path).exists(), f"{name} is not installed (pyproject dev dependencies)"
    return str(path)


# --- Dockerfile ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        lines.append(buffer + line)
        buffer = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            parts = args.split()
            name = parts[parts.index("AS") + 1] if "AS" in parts else f"#{len(stages)}"
            current = stages.setdefault(name, [("FROM", parts[0])])
        elif current is not None:
            current.append((instruction, args))
    return stages


def global_args() -> dict[str, str]:
    result = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            break
        if instruction == "ARG":
            name, _, default = args.partition("=")
            result[name] = default
    return result


def test_dockerfile_builds_cpu_and_cuda_variants_from_one_build_arg() -> None:
    args = global_args()
    assert args["VARIANT"] == "cpu"
    assert args["TORCH_VERSION"] == "2.13.0"
    stages = dockerfile_stages()
    assert stages["builder"][0] == ("FROM", "torch-${VARIANT}")
    assert list(stages)[-1] == "runtime"
    assert stages["runtime"][0] == ("FROM", "runtime-${VARIANT}")
    for variant in ("cpu", "cuda"):
        assert f"torch-{variant}" in stages and f"runtime-{variant}" in stages
    cpu_run = " ".join(a for i, a in stages["torch-cpu"] if i == "RUN")
    cpu_index = dict(a.split("=", 1) for i, a in stages["torch-cpu"] if i == "ARG" and "=" in a)[
        "TORCH_CPU_INDEX"
    ]
    assert cpu_index == "https://download.pytorch.org/whl/cpu"
    assert '"torch==${TORCH_VERSION}" --index-url "${TORCH_CPU_INDEX}"' in cpu_run
    cuda_run = " ".join(a for i, a in stages["torch-cuda"] if i == "RUN")
    assert "torch==${TORCH_VERSION}" in cuda_run and "whl/cpu" not in cuda_run
    # the build fails if pip swapped torch for another build
    builder_run = " ".join(a for i, a in stages["builder"] if i == "RUN")
    assert "'+cpu' in v" in builder_run


def test_dockerfile_copies_only_what_exists_and_is_in_the_context() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    included = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert ignore[[i for i, line in enumerate(ignore) if not line.startswith("#")][0]] == "**"
    sources = []
    for stage in dockerfile_stages().values():
        for instruction, args in stage:
            if instruction == "COPY" and "--from=" not in args:
                sources += [p for p in args.split()[:-1] if not p.startswith("--")]
    assert sources
    for source in sources:
        path = source.rstrip("/")
        assert (REPO / path).exists(), f"COPY {source}: not in the repository"
        assert any(path == inc or path.startswith(inc + "/") for inc in included), (
            f"COPY {source}: excluded by deploy/Dockerfile.dockerignore"
        )


def test_dockerfile_runtime_serves_with_a_healthz_healthcheck() -> None:
    runtime = dict(dockerfile_stages()["runtime-base"])
    assert "/healthz" in runtime["HEALTHCHECK"] and "127.0.0.1:8000" in runtime["HEALTHCHECK"]
    assert runtime["ENTRYPOINT"] == '["hndsr-tiles"]'
    assert runtime["CMD"] == '["serve", "--host", "0.0.0.0", "--port", "8000"]'
    assert set(runtime["EXPOSE"].split()) == {"8000", "9100"}
    assert runtime["USER"] == "10001"


# --- the CLI that the images run --------------------------------------------------------


def cli_help(*command: str) -> str:
    result = CliRunner().invoke(cli_app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def assert_cli_accepts(argv: list[str]) -> None:
    """Every ``--option`` of ``argv`` is an option of that ``hndsr-tiles`` subcommand."""
    command = argv[0]
    text = cli_help(command)
    for option in (a for a in argv[1:] if a.startswith("--")):
        assert option in text, f"hndsr-tiles {command} has no option {option}"


def test_commands_run_by_images_compose_and_kubernetes_exist() -> None:
    compose = load_compose()
    argvs = [compose["services"][name]["command"] for name in ("api", "worker")]
    for manifest in ("api-deployment.yaml", "worker-deployment.yaml", "jobs/sample-data-job.yaml"):
        for doc in k8s_docs(K8S / manifest):
            for container in pod_spec(doc)["containers"]:
                argvs.append(container["args"])
    argvs.append(["serve", "--host", "0.0.0.0", "--port", "8000"])  # Dockerfile CMD
    for argv in argvs:
        assert_cli_accepts(argv)
    assert "cache" in cli_help() and "purge" in cli_help("cache")  # the runbook's purge


# --- compose ------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_files_match_the_compose_spec() -> None:
    files = [DEPLOY / "docker-compose.yml", DEPLOY / "docker-compose.gpu.yml"]
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_and_health_checks() -> None:
    services = load_compose()["services"]
    assert set(services) == {"api", "worker", "redis", "nginx", "prometheus", "grafana"}
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    for name in ("api", "worker", "nginx", "grafana"):
        dependencies = services[name]["depends_on"]
        assert all(d["condition"] == "service_healthy" for d in dependencies.values()), name


def test_compose_images_are_built_here_or_pinned_public_images() -> None:
    services = load_compose()["services"]
    built = {}
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
                DEPLOY / "Dockerfile"
            )
            assert set(build.get("args", {})) <= set(global_args()), name
            built[service["image"]] = name
    assert built, "no service builds the Dockerfile"
    for name, service in services.items():
        image = service["image"]
        if image in built:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: pin a tag ({image})"
        assert "${" not in image, f"{name}: {image} is neither built here nor public"


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_hndsr_variables_are_settings_with_valid_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{(\w+)", text))
    assert not {v for v in interpolated if v.startswith("HNDSR_")} - SETTINGS_ENV
    for name in ("api", "worker"):
        env = compose_env(load_compose()["services"][name])
        hndsr = {k: v for k, v in env.items() if k.startswith("HNDSR_")}
        assert "HNDSR_REDIS_URL" in hndsr
        assert set(hndsr) <= SETTINGS_ENV, set(hndsr) - SETTINGS_ENV
        for key, value in hndsr.items():
            monkeypatch.setenv(key, value)
        settings = Settings()  # raises on a value the settings refuse
        assert settings.redis_url == "redis://redis:6379/0"


def test_compose_ports_agree_with_dockerfile_commands_and_nginx() -> None:
    services = load_compose()["services"]
    exposed = set(dict(dockerfile_stages()["runtime-base"])["EXPOSE"].split())
    api, worker, nginx = services["api"], services["worker"], services["nginx"]
    api_port = api["command"][api["command"].index("--port") + 1]
    assert api["expose"] == [api_port] and api_port in exposed
    assert f"127.0.0.1:{api_port}/healthz" in " ".join(api["healthcheck"]["test"])
    assert worker["expose"] == ["9100"] and "9100" in exposed
    nginx_env = compose_env(nginx)
    assert nginx_env["NGINX_API_UPSTREAM"] == f"api:{api_port}"
    assert nginx["ports"] == [f"8080:{nginx_env['NGINX_PORT']}"]
    assert f"127.0.0.1:{nginx_env['NGINX_PORT']}/" in " ".join(nginx["healthcheck"]["test"])
    template = (DEPLOY / "nginx" / "templates" / "default.conf.template").read_text()
    body = "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("#"))
    assert set(re.findall(r"\$\{(\w+)\}", body)) == set(nginx_env)


def test_compose_bind_mounts_exist() -> None:
    for name, service in load_compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"


# --- Kubernetes ---------------------------------------------------------------------------


def k8s_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def by_kind() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in k8s_manifests()
        for doc in k8s_docs(path)
    }


def test_kubernetes_manifests_validate_offline() -> None:
    manifests = k8s_manifests()
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", *map(str, manifests)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    documents = sum(len(k8s_docs(p)) for p in manifests)
    assert result.stdout.count(" passed ") == documents, result.stdout


def test_kubernetes_validation_rejects_a_broken_manifest(tmp_path: Path) -> None:
    broken = (K8S / "api-deployment.yaml").read_text().replace("containerPort:", "containerPrt:")
    (tmp_path / "broken.yaml").write_text(broken)
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", str(tmp_path / "broken.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    top_level = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert set(kustomization["resources"]) == top_level
    script = (K8S / "deploy.sh").read_text()
    images = {
        c["image"]
        for doc in by_kind().values()
        if doc["kind"] == "Deployment"
        for c in pod_spec(doc)["containers"]
        if not c["image"].startswith("redis:")
    }
    assert images == {"hndsr-tiles", "hndsr-tiles-cuda"}
    for image in images:
        assert f"  - name: {image}\n" in script, f"deploy.sh does not set {image}"


def test_kubernetes_configmap_holds_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = by_kind()[("ConfigMap", "hndsr-config")]["data"]
    assert set(config) <= SETTINGS_ENV, set(config) - SETTINGS_ENV
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.redis_url and settings.redis_url.startswith("redis://hndsr-redis:")
    redis_service = by_kind()[("Service", "hndsr-redis")]
    assert f":{redis_service['spec']['ports'][0]['port']}/" in settings.redis_url
    for doc in by_kind().values():
        if doc["kind"] == "Deployment":
            for container in pod_spec(doc)["containers"]:
                names = {e["name"] for e in container.get("env", [])}
                assert {n for n in names if n.startswith("HNDSR_")} <= SETTINGS_ENV


def test_api_deployment_probes_resources_and_wiring() -> None:
    docs = by_kind()
    api = docs[("Deployment", "hndsr-api")]
    container = pod_spec(api)["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    port = container["ports"][0]
    assert str(port["containerPort"]) == container["args"][container["args"].index("--port") + 1]
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
        port["containerPort"]
    )
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    assert api["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = docs[("Service", "hndsr-api")]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    pdb = docs[("PodDisruptionBudget", "hndsr-api")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = docs[("HorizontalPodAutoscaler", "hndsr-api")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "hndsr-api",
    }
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    # the API drains SR batches on SIGTERM: give it the time uvicorn is configured with
    assert pod_spec(api)["terminationGracePeriodSeconds"] >= 30 + 5


def test_worker_deployment_requests_a_gpu() -> None:
    docs = by_kind()
    worker = docs[("Deployment", "hndsr-worker")]
    container = pod_spec(worker)["containers"][0]
    assert container["args"][0] == "worker"
    assert container["image"] == "hndsr-tiles-cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "HNDSR_DEVICE", "value": "cuda"} in container["env"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod_spec(worker)["tolerations"])
    pdb = docs[("PodDisruptionBudget", "hndsr-worker")]
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_read_only_containers_get_writable_cache_and_tmp() -> None:
    """With a read-only root filesystem, the disk cache tier and /tmp must be volumes."""
    docs = by_kind()
    cache_dir = docs[("ConfigMap", "hndsr-config")]["data"]["HNDSR_CACHE_DIR"]
    for name in ("hndsr-api", "hndsr-worker"):
        container = pod_spec(docs[("Deployment", name)])["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for path in (cache_dir, "/tmp"):
            assert path in mounts and not mounts[path].get("readOnly"), (name, path)
