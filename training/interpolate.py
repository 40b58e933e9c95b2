"""Weight-space interpolation of a fine-tuned checkpoint towards the one it started from
(WiSE-FT): every tensor becomes ``base + alpha * (tuned - base)``.

Tensors the base lacks (blocks grown from it, ``training.train.GROWN``) interpolate from
what the grown network started with: zero for the tensors that start at zero (so the block
is the identity at ``alpha = 0``), the tuned value for the others (they meet a zero tensor
in the base). ``alpha = 0`` computes exactly what the base did, ``alpha = 1`` is the tuned
checkpoint; in between trades the tuned degradations against the base's protocol.

python -m training.interpolate --base sr_engine/checkpoints/hndsr.safetensors \
    --tuned artifacts/train_v3/operator.safetensors --alpha 0.5 \
    --out artifacts/wise/hndsr.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sr_engine.checkpoint import card_path, read_state, save_checkpoint
from sr_engine.model import HNDSR


def interpolate_states(
    base: dict[str, torch.Tensor],
    tuned: dict[str, torch.Tensor],
    start: dict[str, torch.Tensor],
    alpha: float,
) -> dict[str, torch.Tensor]:
    """``base + alpha * (tuned - base)`` per tensor of ``tuned``; where ``base`` lacks one,
    ``start`` (the grown network's initial tensors) says whether it started at zero."""
    out = {}
    for name, value in tuned.items():
        if name in base:
            origin = base[name]
        elif not start[name].any():
            origin = torch.zeros_like(value)
        else:
            origin = value
        if origin.shape != value.shape:
            raise ValueError(f"{name}: base {tuple(origin.shape)} vs tuned {tuple(value.shape)}")
        out[name] = origin + alpha * (value - origin)
    return out


def interpolate(base_path: Path, tuned_path: Path, alpha: float, out: Path) -> dict:
    """Write the interpolated checkpoint (weights and card) and return its card."""
    if not 0.0 <= alpha <= 1.0:
        raise SystemExit(f"--alpha must lie in [0, 1], got {alpha}")
    _, base = read_state(base_path)
    cfg, tuned = read_state(tuned_path)
    net = HNDSR(cfg)
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(interpolate_states(base, tuned, start, alpha))
    tuned_card = json.loads(card_path(tuned_path).read_text())
    base_card = json.loads(card_path(base_path).read_text())
    card = {
        **{k: v for k, v in tuned_card.items() if k not in ("version", "evaluation")},
        "interpolation": {
            "base": base_card.get("version"),
            "tuned": tuned_card.get("version"),
            "alpha": alpha,
            "rule": "base + alpha * (tuned - base), per tensor (WiSE-FT)",
        },
    }
    return save_checkpoint(net, out, card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--tuned", type=Path, required=True)
    parser.add_argument("--alpha", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    card = interpolate(args.base, args.tuned, args.alpha, args.out)
    print(
        f"{card['version']}: alpha {args.alpha} between {args.base} and {args.tuned} -> {args.out}"
    )


if __name__ == "__main__":
    main()
