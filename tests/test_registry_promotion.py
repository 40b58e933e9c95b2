"""The model registry through ``hndsr-tiles model ...``: gate, promotion, rollback.

Real MLflow: a sqlite store in a temporary folder, and a tracking server backed by a scratch
PostgreSQL database (artifacts served by the server). The candidates are real checkpoints
with real (small) evaluations; the worse one is the shipped model with its operator's
weights perturbed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from tests.plugins.server import free_port
from tileserver.cli import app
from training import registry

pytest_plugins = ["tests.plugins.model_releases"]


def model_cli(uri: str, *args: str) -> tuple[int, str]:
    """Run ``hndsr-tiles model <args>`` against the store at ``uri``; (exit code, output)."""
    result = CliRunner().invoke(
        app, ["model", *args], env={"MLFLOW_TRACKING_URI": uri, "COLUMNS": "200"}
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def register(uri: str, release: Path) -> str:
    code, out = model_cli(
        uri,
        "register",
        str(release),
        "--eval",
        str(release / "eval.json"),
        "--eval-tiles",
        str(release / "eval_tiles.json"),
    )
    assert code == 0, out
    found = re.search(r"registered hndsr version (\d+)", out)
    assert found, out
    return found.group(1)


def champion(uri: str) -> str | None:
    return registry.aliases(MlflowClient(tracking_uri=uri)).get(registry.CHAMPION)


def release_cycle(uri: str, release_dir: Callable[..., Path]) -> None:
    """Register/promote the shipped model, refuse a worse one, accept an equal one, roll back."""
    shipped, worse = release_dir("shipped"), release_dir("perturbed", 0.5)

    first = register(uri, shipped)
    code, out = model_cli(uri, "promote", first, "--reason", "first release")
    assert code == 0, out
    assert champion(uri) == first

    bad = register(uri, worse)
    code, out = model_cli(uri, "promote", bad, "--reason", "try the perturbed one")
    assert code == 1, out
    assert "beats_champion.fast_psnr_db" in out and "FAIL" in out and "refused" in out
    assert champion(uri) == first  # unchanged

    equal = register(uri, shipped)
    code, out = model_cli(uri, "promote", "challenger", "--reason", "same weights, new run")
    assert code == 0, out
    assert "PASS" in out and "FAIL" not in out
    assert champion(uri) == equal

    code, out = model_cli(uri, "rollback", "--reason", "drill")
    assert code == 0, out
    assert champion(uri) == first

    client = MlflowClient(tracking_uri=uri)
    log = registry.alias_log(client)
    assert [(e["alias"], e["version"], e["action"]) for e in log if e["alias"] == "champion"] == [
        ("champion", first, "set"),
        ("champion", equal, "set"),
        ("champion", first, "rollback"),
    ]
    assert all(e["by"] and e["at"] and e["reason"] for e in log)
    tags = client.get_model_version(registry.MODEL_NAME, first).tags
    assert tags["champion.reason"] == "drill"
    assert tags["semver"] == "1.0.0"
    assert client.get_model_version(registry.MODEL_NAME, bad).tags["semver"] == "1.1.0"
    assert client.get_model_version(registry.MODEL_NAME, equal).tags["semver"] == "1.2.0"
    assert tags["data.split_sha256"]

    code, out = model_cli(uri, "list")
    assert code == 0 and "champion" in out and "challenger" in out


def test_worse_model_is_refused_equal_one_promoted_and_rollback_restores(tmp_path, release_dir):
    release_cycle(f"sqlite:///{tmp_path / 'mlflow.db'}", release_dir)


def test_promotion_without_a_tile_evaluation_is_refused(tmp_path, release_dir):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    shipped = release_dir("shipped")
    code, out = model_cli(uri, "register", str(shipped))
    assert code == 0, out
    code, out = model_cli(uri, "promote", "--reason", "no tile eval")
    assert code == 1 and "tile_eval.present" in out
    assert champion(uri) is None


@pytest.fixture
def postgres_tracking_server(tmp_path, postgres_database) -> Iterator[str]:
    """``mlflow server`` on a scratch PostgreSQL database, artifacts proxied by the server."""
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("wb")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", postgres_database]
    command += ["--artifacts-destination", str(tmp_path / "artifacts")]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "mlflow-server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.slow
def test_release_cycle_against_a_postgres_backed_tracking_server(
    postgres_tracking_server, release_dir
):
    release_cycle(postgres_tracking_server, release_dir)
