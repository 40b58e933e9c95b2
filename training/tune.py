"""Choose the diffusion mode's DDIM steps and temperature on the validation split.

    python -m training.tune --checkpoint run/hndsr.safetensors --out artifacts/tuned

The refiner stage calls this at its end; the CLI re-tunes a checkpoint trained elsewhere
(e.g. on a GPU) after a change of the sampling code, and logs the grid to MLflow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlflow
import yaml

from sr_engine.checkpoint import card_path, read_network, save_checkpoint
from training.core import tune
from training.data import read_pack
from training.tracking import setup


def grid_metrics(row: dict) -> dict[str, float]:
    """One grid row as flat MLflow metrics (``x4_margin`` etc. for the per-scale values)."""
    flat = {k: float(v) for k, v in row.items() if k != "by_scale"}
    for label, values in row["by_scale"].items():
        flat.update({f"{label.replace('.', '_')}_{k}": float(v) for k, v in values.items()})
    return flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, default=Path("artifacts/prepared"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    net = read_network(args.checkpoint)
    record = tune(net, read_pack(args.prepared / "val.npz"), params["evaluate"])
    card = json.loads(card_path(args.checkpoint).read_text())
    card.pop("config", None)
    card["diffusion_tuning"] = record
    saved = save_checkpoint(net, args.out / "hndsr.safetensors", card)
    print(json.dumps(record["chosen"]), saved["version"])
    setup(params.get("mlflow", {}).get("experiment", "hndsr"))
    with mlflow.start_run(run_name="tune_diffusion"):
        mlflow.set_tags({"stage": "tune_diffusion", "source": str(args.checkpoint)})
        for i, row in enumerate(record["grid"]):
            mlflow.log_metrics(grid_metrics(row), step=i)
        mlflow.log_artifact(str(card_path(args.out / "hndsr.safetensors")))


if __name__ == "__main__":
    main()
