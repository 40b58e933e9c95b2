"""MLflow at the edges: tracking URI, runs, flat params; and logging a GPU run brought back.

The store is ``sqlite:///mlflow.db`` in the working directory unless ``MLFLOW_TRACKING_URI``
is set (MLflow reads that variable itself).

    python -m training.tracking log-gpu run   # log a gpu_train.py output folder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlflow
from mlflow.environment_variables import MLFLOW_TRACKING_URI

DEFAULT_URI = "sqlite:///mlflow.db"


def setup(experiment: str) -> str:
    """Point MLflow at the project store and select the experiment; returns the URI."""
    uri = MLFLOW_TRACKING_URI.get() or DEFAULT_URI
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    return uri


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """Nested dict -> {"a.b": value} with values as strings (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def log_gpu_run(run_dir: Path, experiment: str = "hndsr") -> str:
    """Log a ``training/gpu_train.py`` output folder (metrics curve, card, checkpoint)."""
    setup(experiment)
    report = json.loads((run_dir / "metrics.json").read_text())
    card = json.loads((run_dir / "hndsr.json").read_text())
    with mlflow.start_run(run_name="gpu_train") as run:
        mlflow.set_tags({"stage": "gpu_train", "device": report.get("device", "?")})
        mlflow.log_params(flatten(card["config"], "model."))
        for line in report.get("log", []):
            stage = line["stage"]
            values = {
                f"{stage}.{k}": float(v) for k, v in line.items() if k not in ("stage", "step")
            }
            mlflow.log_metrics(values, step=int(line["step"]))
        for stage in ("autoencoder", "operator", "refiner"):
            if stage in report:
                mlflow.log_metric(f"{stage}.steps_total", float(report[stage]["steps"]))
                mlflow.log_metric(f"{stage}.seconds", float(report[stage]["seconds"]))
        for name in ("hndsr.safetensors", "hndsr.json", "metrics.json", "log.txt"):
            if (run_dir / name).exists():
                mlflow.log_artifact(str(run_dir / name))
        return run.info.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gpu = sub.add_parser("log-gpu")
    gpu.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    print(log_gpu_run(args.run_dir))


if __name__ == "__main__":
    main()
