"""Where a served model comes from: a checkpoint path, or a version in the MLflow registry.

``models:/hndsr@champion`` (or ``models:/hndsr/3``) is resolved against the registry at
``MLFLOW_TRACKING_URI`` (default ``sqlite:///mlflow.db``, as the training side); the
version's artifacts are downloaded once into ``<cache dir>/models/<name>-v<N>/`` and the
URI's last good copy is remembered there, so a registry outage at start-up or reload
serves that copy (``fallback_error`` says why). MLflow is imported only for such URIs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from sr_engine import ModelUnavailableError

REGISTRY_SCHEME = "models:/"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
WEIGHTS_FILE = "hndsr.safetensors"
"""Name of the weights among a registered version's artifacts (``training.registry``)."""
REGISTRY_URI = re.compile(r"^models:/(?P<name>[\w.-]+)(?:@(?P<alias>[\w.-]+)|/(?P<number>\d+))$")


@dataclass(frozen=True)
class ModelSource:
    """A model URI resolved to a local weights file (``None``: the shipped checkpoint)."""

    uri: str
    weights: Path | None
    registry_version: str | None = None
    """Version number in the registry (``None`` for a path)."""
    fallback_error: str | None = None
    """Set when the registry could not be read and the last good copy is served."""


def resolve_model_uri(uri: str | None, cache_dir: Path) -> ModelSource:
    """A path (file, or folder holding ``hndsr.safetensors``) or a ``models:/`` URI -> source.

    Raises ``ModelUnavailableError`` for a registry URI that cannot be resolved and has no
    local copy yet.
    """
    if not uri:
        return ModelSource("embedded", None)
    if not uri.startswith(REGISTRY_SCHEME):
        path = Path(uri).expanduser()
        return ModelSource(uri, path / WEIGHTS_FILE if path.is_dir() else path)
    match = REGISTRY_URI.match(uri)
    if match is None:
        raise ModelUnavailableError(
            f"{uri!r} is not a registry URI (models:/<name>@<alias> or models:/<name>/<n>)"
        )
    store = cache_dir / "models"
    try:
        number, folder = _download(match["name"], match["alias"], match["number"], store)
    except Exception as exc:  # unreachable store, unknown alias, missing mlflow...
        last = _last_good(store, uri)
        if last is None:
            raise ModelUnavailableError(f"cannot resolve {uri} ({exc}) and no local copy") from exc
        return ModelSource(uri, last[1] / WEIGHTS_FILE, last[0], f"{type(exc).__name__}: {exc}")
    _remember(store, uri, number, folder)
    return ModelSource(uri, folder / WEIGHTS_FILE, number)


def _download(name: str, alias: str | None, number: str | None, store: Path) -> tuple[str, Path]:
    """(version number, local folder with its artifacts), downloading them if not yet here."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.environment_variables import MLFLOW_TRACKING_URI

    tracking = MLFLOW_TRACKING_URI.get() or DEFAULT_TRACKING_URI
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    if alias is not None:
        version = client.get_model_version_by_alias(name, alias)
    else:
        version = client.get_model_version(name, str(number))
    folder = store / f"{name}-v{version.version}"
    if (folder / WEIGHTS_FILE).is_file():
        return str(version.version), folder
    scratch = store / f".download-{uuid.uuid4().hex}"
    scratch.mkdir(parents=True)
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=version.source, dst_path=str(scratch), tracking_uri=tracking
            )
        )
        found = next(local.rglob(WEIGHTS_FILE), None) if local.is_dir() else None
        if found is None:
            raise ModelUnavailableError(f"version {version.version} has no {WEIGHTS_FILE}")
        try:
            os.replace(found.parent, folder)
        except OSError:  # another worker process put the same version there first
            if not (folder / WEIGHTS_FILE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return str(version.version), folder


def _pointer(store: Path, uri: str) -> Path:
    return store / (re.sub(r"[^\w.-]+", "_", uri.removeprefix(REGISTRY_SCHEME)) + ".json")


def _remember(store: Path, uri: str, number: str, folder: Path) -> None:
    """Record ``folder`` as the last good copy of ``uri`` (atomically)."""
    pointer = _pointer(store, uri)
    scratch = pointer.with_suffix(f".{uuid.uuid4().hex}.tmp")
    scratch.write_text(json.dumps({"uri": uri, "version": number, "folder": folder.name}))
    os.replace(scratch, pointer)


def _last_good(store: Path, uri: str) -> tuple[str, Path] | None:
    """(version number, folder) of the last copy of ``uri`` resolved here, if still present."""
    try:
        record = json.loads(_pointer(store, uri).read_text())
    except (OSError, ValueError):
        return None
    folder = store / record["folder"]
    return (str(record["version"]), folder) if (folder / WEIGHTS_FILE).is_file() else None
