"""GitHub Actions workflows: valid against the workflow schema (check-jsonschema's vendored
copy), and they call commands and files that exist in this repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    # PyYAML reads the `on:` key as True
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def run_lines(workflow: dict[str, Any]) -> list[str]:
    return [
        line.strip()
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "run" in step
        for line in step["run"].splitlines()
        if line.strip()
    ]


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, flags=re.M))


def test_workflows_match_the_github_workflow_schema() -> None:
    checker = shutil.which("check-jsonschema") or str(
        Path(sys.executable).parent / "check-jsonschema"
    )
    files = sorted(map(str, WORKFLOWS.glob("*.yml")))
    assert len(files) == 4
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_same_commands_as_local_ci() -> None:
    ci = load("ci.yml")
    lines = run_lines(ci)
    assert ".ci/run" in lines and "make lint" in lines
    assert "make test" in (REPO / ".ci/run").read_text()
    assert {"lint", "test", "install"} <= make_targets()
    assert os.access(REPO / ".ci/run", os.X_OK)
    assert {"push", "pull_request"} <= set(ci["on"])


def test_model_validation_runs_the_smoke_pipeline_and_the_gate() -> None:
    from sr_engine.checkpoint import DEFAULT_CHECKPOINT
    from training.export import SHIP_GATES

    lines = run_lines(load("model-validation.yml"))
    assert "make install" in lines
    smoke = [line for line in lines if "pytest" in line]
    assert smoke == [
        ".venv/bin/python -m pytest tests/test_training_pipeline.py -p no:cacheprovider"
    ]
    pipeline_test = (REPO / "tests/test_training_pipeline.py").read_text()
    assert '"repro"' in pipeline_test and "training/smoke/params.yaml" in pipeline_test
    gate = [line.split() for line in lines if line.startswith(".github/scripts/model-gate.sh")]
    assert len(gate) == 1
    assert REPO / gate[0][1] == DEFAULT_CHECKPOINT  # the shipped checkpoint is gated
    script = REPO / ".github/scripts/model-gate.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "-m training.evaluate" in text and "-m training.prepare" in text
    assert "from training.export import SHIP_GATES" in text and SHIP_GATES
    for module in re.findall(r"-m ([\w.]+)", text):
        assert (REPO / (module.replace(".", "/") + ".py")).exists(), module
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_image_workflow_builds_both_dockerfile_variants() -> None:
    workflow = load("image.yml")
    job = workflow["jobs"]["build"]
    assert job["strategy"]["matrix"]["variant"] == ["cpu", "cuda"]
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push"))
    assert build["with"]["file"] == "deploy/Dockerfile"
    assert "VARIANT=${{ matrix.variant }}" in build["with"]["build-args"]
    assert (REPO / build["with"]["file"]).exists()
    # pull requests build without pushing
    assert build["with"]["push"] == "${{ github.event_name != 'pull_request' }}"


def test_deploy_waits_for_manual_approval_before_production() -> None:
    workflow = load("deploy.yml")
    jobs = workflow["jobs"]
    assert jobs["production"]["needs"] == "staging"
    assert jobs["production"]["environment"]["name"] == "production"
    assert jobs["staging"]["environment"]["name"] == "staging"
    assert "workflow_dispatch" in workflow["on"]
    for name in ("staging", "production"):
        lines = run_lines({"jobs": {name: jobs[name]}})
        scripts = [line.split()[0] for line in lines if line.startswith("deploy/")]
        assert scripts == ["deploy/kubernetes/deploy.sh"]
        assert any("rollout undo" in line for line in lines)
    script = REPO / "deploy/kubernetes/deploy.sh"
    assert os.access(script, os.X_OK)
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
