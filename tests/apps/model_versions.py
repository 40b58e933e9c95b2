"""Model versions for the serving tests: real checkpoints, cards-only stand-ins, a registry.

- ``real_variant(folder, seed)``: the shipped checkpoint with its weights nudged (a real,
  distinct HNDSR version, ``hndsr-<date>-<sha8>``).
- ``stand_in(folder, version, **card)``: a card (plus placeholder weights) that
  ``tests.apps.versioned_app`` loads as a ``TestUpscaler`` of that version; card fields
  ``test_delay_s`` and ``test_ballast_mb`` make it slow or big.
- ``Registry``: a real MLflow store (sqlite in a folder) with ``register`` and ``alias``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from mlflow import MlflowClient

from sr_engine.checkpoint import DEFAULT_CHECKPOINT, read_network, save_checkpoint

MODEL = "hndsr"


def real_variant(folder: Path, seed: int) -> Path:
    """A real checkpoint (weights file path): the shipped weights plus tiny seeded noise."""
    net = read_network(DEFAULT_CHECKPOINT)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in net.operator.parameters():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 1e-4)
    weights = folder / "hndsr.safetensors"
    save_checkpoint(net, weights, {"note": f"test variant {seed}"})
    return weights


def card_version(weights: Path) -> str:
    """The version named by the card beside ``weights``."""
    return json.loads(weights.with_suffix(".json").read_text())["version"]


def stand_in(folder: Path, version: str, **card: object) -> Path:
    """Weights path of a stand-in version for ``tests.apps.versioned_app``."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "hndsr.safetensors"
    weights.write_bytes(b"stand-in")
    weights.with_suffix(".json").write_text(json.dumps({"version": version, **card}))
    return weights


def roles_env(data_dir: Path, folder: Path, *roles: str) -> dict[str, str]:
    """A server on ``data_dir`` whose champion is the stand-in ``champion-1`` and each of
    ``roles`` (``canary``, ``shadow``) the stand-in ``<role>-1`` (files under ``folder``)."""
    env = {
        "HNDSR_DATA_DIR": str(data_dir),
        "HNDSR_MODEL_URI": str(stand_in(folder / "champion", "champion-1")),
    }
    for role in roles:
        env[f"HNDSR_{role.upper()}_MODEL_URI"] = str(stand_in(folder / role, f"{role}-1"))
    return env


class Registry:
    """A real MLflow tracking/registry store in ``folder`` (sqlite, local artifacts)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{folder / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment = self.client.create_experiment(
            "serving-tests", artifact_location=str(folder / "artifacts")
        )
        self.client.create_registered_model(MODEL)

    def register(self, weights: Path) -> str:
        """Register the checkpoint at ``weights`` (+ card) as a new version; its number."""
        staged = weights.parent / "staged-model"
        staged.mkdir(exist_ok=True)
        for file in (weights, weights.with_suffix(".json")):
            shutil.copyfile(file, staged / file.name)
        run = self.client.create_run(self.experiment)
        self.client.log_artifacts(run.info.run_id, str(staged), "model")
        self.client.set_terminated(run.info.run_id)
        shutil.rmtree(staged)
        version = self.client.create_model_version(
            MODEL, f"{run.info.artifact_uri}/model", run.info.run_id
        )
        return str(version.version)

    def alias(self, alias: str, number: str) -> None:
        """Point ``alias`` at version ``number``."""
        self.client.set_registered_model_alias(MODEL, alias, number)
