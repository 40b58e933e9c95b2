"""Serving from a model URI: a checkpoint path, or ``models:/hndsr@champion`` in a real
MLflow registry (sqlite in a temporary folder), with the last good copy as the fallback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.apps.model_versions import Registry, card_version, real_variant
from tileserver.model_source import resolve_model_uri
from tileserver.settings import Settings
from tileserver.sr_backend import SRBackend

UNREACHABLE = "sqlite:////nonexistent-folder/registry/mlflow.db"
"""A tracking URI no store answers at (the folder does not exist)."""


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    store = Registry(tmp_path / "registry")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    return store


def backend(tmp_path: Path, uri: str) -> SRBackend:
    return SRBackend(Settings(model_uri=uri, cache_dir=tmp_path / "cache", device="cpu"))


def test_a_path_uri_serves_that_checkpoint(tmp_path: Path) -> None:
    weights = real_variant(tmp_path, seed=1)
    served = backend(tmp_path, str(weights))
    assert served.model is not None and served.model.version == card_version(weights)
    assert served.model_status()["roles"]["champion"]["uri"] == str(weights)


def test_a_path_uri_needs_no_mlflow(tmp_path: Path) -> None:
    weights = real_variant(tmp_path, seed=1)
    script = (
        "import sys; sys.modules['mlflow'] = None\n"  # any import of mlflow now fails
        "from pathlib import Path\n"
        "from tileserver.settings import Settings\n"
        "from tileserver.sr_backend import SRBackend\n"
        f"b = SRBackend(Settings(model_uri={str(weights)!r}, device='cpu'))\n"
        "print(b.model.version)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == card_version(weights)


def test_the_champion_alias_is_downloaded_and_served(tmp_path: Path, registry: Registry) -> None:
    first, second = real_variant(tmp_path / "a", 1), real_variant(tmp_path / "b", 2)
    registry.register(first)
    registry.alias("champion", registry.register(second))
    served = backend(tmp_path, "models:/hndsr@champion")
    assert served.model is not None and served.model.version == card_version(second)
    role = served.model_status()["roles"]["champion"]
    assert role["registry_version"] == "2" and role["fallback_error"] is None
    assert (tmp_path / "cache" / "models" / "hndsr-v2" / "hndsr.safetensors").is_file()
    assert not [name for name, down in served.degraded_checks().items() if down()]


def test_a_registry_outage_serves_the_last_good_copy(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = real_variant(tmp_path / "a", 1)
    registry.alias("champion", registry.register(weights))
    backend(tmp_path, "models:/hndsr@champion")  # a start-up that downloads it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)
    source = resolve_model_uri("models:/hndsr@champion", tmp_path / "cache")
    assert source.fallback_error and source.registry_version == "1"
    served = backend(tmp_path, "models:/hndsr@champion")
    assert served.model is not None and served.model.version == card_version(weights)
    degraded = [name for name, down in served.degraded_checks().items() if down()]
    assert degraded == ["model-registry"]


def test_an_outage_without_a_local_copy_leaves_bicubic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)
    served = backend(tmp_path, "models:/hndsr@champion")
    assert served.model is None and "no local copy" in (served.model_error or "")
    assert served.resolve("auto").mode == "bicubic"
    assert served.degraded_checks()["model"]()


def test_readyz_lists_the_registry_fallback(
    tmp_path: Path, registry: Registry, live_server, sample_scene: Path
) -> None:
    weights = real_variant(tmp_path / "a", 1)
    registry.alias("champion", registry.register(weights))
    cache = tmp_path / "server-cache"
    resolve_model_uri("models:/hndsr@champion", cache)  # the copy an earlier start left
    env = {
        "HNDSR_MODEL_URI": "models:/hndsr@champion",
        "HNDSR_CACHE_DIR": str(cache),
        "HNDSR_DATA_DIR": str(sample_scene),
        "HNDSR_DEVICE": "cpu",
        "MLFLOW_TRACKING_URI": UNREACHABLE,
    }
    base = live_server(env, ready_path="/readyz")
    ready = httpx.get(f"{base}/readyz", timeout=30).json()
    assert ready["status"] == "degraded" and ready["degraded"] == ["model-registry"]
    assert ready["model"]["version"] == card_version(weights)
    assert ready["model"]["roles"]["champion"]["fallback_error"]
