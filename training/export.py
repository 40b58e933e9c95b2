"""DVC stage `export`: final checkpoint + model card (data hashes, evaluation, gates).

    python -m training.export [--checkpoint ...] [--eval artifacts/eval/eval.json] [--ship]

``--ship`` copies the result into ``sr_engine/checkpoints/`` (what ``load_model()`` loads),
and refuses when the evaluation was made on other weights or when `fast` or `diffusion`
loses to the best non-learned baseline at any evaluated scale.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import mlflow
import yaml

from sr_engine.checkpoint import (
    DEFAULT_CHECKPOINT,
    card_path,
    file_sha256,
    read_network,
    write_card,
)
from training.tracking import setup

SHIP_GATES = ("fast_beats_best_baseline_everywhere", "diffusion_beats_best_baseline_everywhere")


DEGRADATION_MODEL = (
    "Training LR per patch (decision 0304): a share clean_prob with the protocol's "
    "antialiased bicubic; the rest antialiased bicubic, exact area averaging or a Gaussian "
    "PSF (sigma = f x scale, f in sigma_range, per axis with aniso_sigma_prob), a sub-pixel "
    "shift up to shift_max LR px (the output origin is -shift, so the target is exact), "
    "read + shot noise, 8-bit rounding, JPEG/WebP at a quality in quality_range"
)


def stage_cards(card: dict) -> list[dict]:
    """A training card and the cards of the checkpoints it was initialised from."""
    return [card, *stage_cards(card["init"])] if isinstance(card.get("init"), dict) else [card]


def model_card(source_card: dict, manifest: dict, report: dict) -> dict:
    """The card's content beyond what ``write_card`` adds."""
    stages = stage_cards(source_card)
    return {
        "degradation_model": {
            "description": DEGRADATION_MODEL,
            "by_stage": {c["stage"]: c.get("degradations") for c in stages if "stage" in c},
        },
        "compute": {c["stage"]: c.get("device", "?") for c in stages if "stage" in c},
        "training": {
            k: v for k, v in source_card.items() if k not in ("version", "weights_sha256")
        },
        "data": {
            "source": manifest["source"],
            "counts": manifest["counts"],
            "split_sha256": manifest["split_sha256"],
            "packs": manifest["packs"],
            "scenes": manifest.get("scenes", []),
        },
        "evaluation": {
            "split": "test",
            "images": report["images"],
            "protocol": "PSNR/SSIM on BT.601 luma, ceil(s) border shave; LR by antialiased "
            "bicubic downsampling rounded to 8 bits; HF ratio = spectral energy above half "
            "Nyquist, SR/HR",
            "rows": report["rows"],
            "gates": report["gates"],
        },
        "autoencoder_recon_psnr_test": report["autoencoder"],
        "diffusion": report["diffusion"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--checkpoint", type=Path, default=Path("artifacts/train/refiner.safetensors")
    )
    parser.add_argument("--eval", type=Path, default=Path("artifacts/eval/eval.json"))
    parser.add_argument("--prepared", type=Path, default=Path("artifacts/prepared"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/export"))
    parser.add_argument("--ship", action="store_true")
    args = parser.parse_args()
    report = json.loads(args.eval.read_text())
    if report["checkpoint_sha256"] != file_sha256(args.checkpoint):
        raise SystemExit("the evaluation report belongs to other weights: evaluate again")
    manifest = json.loads((args.prepared / "manifest.json").read_text())
    source_card = json.loads(card_path(args.checkpoint).read_text())
    net = read_network(args.checkpoint)
    weights = args.out / "hndsr.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.checkpoint, weights)  # the evaluated bytes, so the version holds
    card = write_card(
        net, weights, model_card(source_card, manifest, report), version=report["version"]
    )
    print(f"exported {card['version']} ({card['parameters']} parameters) to {weights}")

    params = yaml.safe_load(args.params.read_text())
    setup(params.get("mlflow", {}).get("experiment", "hndsr"))
    with mlflow.start_run(run_name="export"):
        mlflow.set_tags({"stage": "export", "model_version": card["version"]})
        mlflow.log_params({"version": card["version"], "parameters": card["parameters"]})
        mlflow.log_artifact(str(weights))
        mlflow.log_artifact(str(card_path(weights)))

    if args.ship:
        failed = [g for g in SHIP_GATES if not report["gates"].get(g)]
        if failed:
            raise SystemExit(f"not shipped: {', '.join(failed)}")
        DEFAULT_CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, DEFAULT_CHECKPOINT)
        shutil.copyfile(card_path(weights), card_path(DEFAULT_CHECKPOINT))
        print(f"shipped to {DEFAULT_CHECKPOINT}")


if __name__ == "__main__":
    main()
