"""HNDSR checkpoints: safetensors weights plus a JSON model card beside them.

``<name>.safetensors`` holds the weights (metadata: ``config`` JSON, ``version``);
``<name>.json`` is the model card (version, parameter count, halo, data hashes, evaluation
table). Loading checks the card's ``weights_sha256`` against the file, so a truncated or
altered checkpoint raises ``ModelUnavailableError`` instead of serving garbage.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sr_engine.interface import ModelUnavailableError
from sr_engine.model import HNDSR, HNDSRConfig, HNDSRUpscaler, config_dict

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "hndsr.safetensors"


def card_path(weights: Path) -> Path:
    """The model card that belongs to a weights file."""
    return weights.with_suffix(".json")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parameter_count(net: torch.nn.Module) -> int:
    """Number of learned parameters."""
    return sum(p.numel() for p in net.parameters())


def save_checkpoint(net: HNDSR, path: Path, card: dict | None = None) -> dict:
    """Write weights and model card; the version is ``hndsr-<date>-<sha8 of weights>``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    config = json.dumps(config_dict(net.cfg), sort_keys=True)
    save_file(state, str(path), metadata={"config": config, "format": "hndsr-1"})
    return write_card(net, path, card)


def write_card(net: HNDSR, path: Path, card: dict | None = None, version: str = "") -> dict:
    """Write the model card of the weights file ``path`` (which ``net`` was read from).

    ``version`` keeps an existing version name (export copies the evaluated file byte for
    byte and keeps its name); by default it is ``hndsr-<date>-<sha8 of the file>``.
    """
    sha = file_sha256(path)
    full = dict(card or {})
    full.update(
        {
            "version": version or f"hndsr-{datetime.now(UTC):%Y%m%d}-{sha[:8]}",
            "weights_file": path.name,
            "weights_sha256": sha,
            "config": config_dict(net.cfg),
            "parameters": parameter_count(net),
            "parameters_by_part": {
                "autoencoder": parameter_count(net.ae),
                "operator": parameter_count(net.operator),
                "refiner": parameter_count(net.refiner),
            },
            "receptive_field_lr_px": net.cfg.encoder_radius() + 1,
            "halo_lr_px": net.cfg.halo(),
            "refiner_margin_hr_px": net.cfg.refiner_margin(),
            "modes": list(HNDSRUpscaler.modes),
            "default_mode": HNDSRUpscaler.default_mode,
        }
    )
    card_path(path).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


def read_state(path: Path) -> tuple[HNDSRConfig, dict[str, torch.Tensor]]:
    """Weights file -> (its config, its tensors), without building a network."""
    return HNDSRConfig(**json.loads(_metadata(path)["config"])), load_file(str(path))


def read_network(path: Path) -> HNDSR:
    """Weights file -> network (no card needed); used by training to resume and export."""
    cfg, state = read_state(path)
    net = HNDSR(cfg)
    net.load_state_dict(state)
    return net


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata() or {}


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_checkpoint(path=None, device: str = "auto") -> HNDSRUpscaler:
    """Load weights and card; ``ModelUnavailableError`` if either is missing or corrupt."""
    weights = Path(path) if path is not None else DEFAULT_CHECKPOINT
    card_file = card_path(weights)
    if not weights.is_file() or not card_file.is_file():
        raise ModelUnavailableError(f"no HNDSR checkpoint at {weights} (+ {card_file.name})")
    try:
        card = json.loads(card_file.read_text())
        if card.get("weights_sha256") != file_sha256(weights):
            raise ValueError("weights do not match the model card's SHA-256")
        net = read_network(weights)
    except Exception as exc:  # any parse/shape/hash failure means: unusable
        raise ModelUnavailableError(f"corrupt HNDSR checkpoint {weights}: {exc}") from exc
    return HNDSRUpscaler(net, card["version"], card, resolve_device(device))
