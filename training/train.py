"""DVC stages train_autoencoder / train_operator / train_diffusion: one HNDSR stage per call.

    python -m training.train --stage autoencoder|operator|refiner [--params params.yaml]

Stage 1 starts from fresh weights, stages 2 and 3 from the previous stage's checkpoint
(``--init`` overrides, e.g. a checkpoint trained on a GPU; with ``--fresh`` only its
earlier parts are kept and this stage's part starts anew). The resumable state lives in
``artifacts/state/<stage>-<config hash>.pt``, so an interrupted stage continues where it
stopped, and only with the same configuration. The refiner stage ends by tuning the
diffusion steps/temperature on the validation split. Everything is logged to MLflow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import mlflow
import torch
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sr_engine.checkpoint import (
    card_path,
    file_sha256,
    read_network,
    read_state,
    resolve_device,
    save_checkpoint,
)
from sr_engine.model import HNDSR, HNDSRConfig, HNDSRUpscaler
from training.core import stage_config, train_stages
from training.data import read_pack, stack_images
from training.degradations import DegradationConfig
from training.samples import comparison_png
from training.tracking import flatten, setup
from training.tune import grid_metrics

PREVIOUS = {"operator": "autoencoder", "refiner": "operator"}


GROWN = ("operator.wide.", "operator.cell_gate.")  # start as the identity: may miss in --init


def initial_network(
    params: dict, stage: str, out: Path, init: Path | None, fresh: bool = False
) -> HNDSR:
    """Fresh weights (stage 1) or the previous stage's / ``init`` checkpoint.

    With ``init``, the network has the architecture of ``params["model"]`` over the init's
    config; tensors the init lacks are allowed only for blocks that start as the identity
    (``GROWN``: the `fast` encoder grown from a shipped checkpoint computes what it did)
    and, with ``fresh``, for the trained part, which then starts anew (e.g. a new refiner
    on a GPU-trained operator).
    """
    if init is not None:
        cfg, state = read_state(init)
        torch.manual_seed(int(params["train"].get("seed", 0)))
        net = HNDSR(HNDSRConfig(**{**asdict(cfg), **params["model"]}))
        if fresh:
            state = {k: v for k, v in state.items() if not k.startswith(f"{stage}.")}
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise SystemExit(f"{init} does not match params.yaml's model: {exc}") from exc
        allowed = GROWN + ((f"{stage}.",) if fresh else ())
        if unexpected or any(not k.startswith(allowed) for k in missing):
            raise SystemExit(f"{init} does not match params.yaml's model outside {allowed}")
        return net
    if stage == "autoencoder":
        torch.manual_seed(int(params["train"].get("seed", 0)))
        return HNDSR(HNDSRConfig(**params["model"]))
    return read_network(out / f"{PREVIOUS[stage]}.safetensors")


def log_metrics(metrics: dict, step: int) -> None:
    """Per-log-window metrics of the running stage."""
    mlflow.log_metrics(metrics, step=step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", choices=["autoencoder", "operator", "refiner"], required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--prepared", type=Path, default=Path("artifacts/prepared"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/train"))
    parser.add_argument("--state-dir", type=Path, default=Path("artifacts/state"))
    parser.add_argument("--init", type=Path, default=None)
    parser.add_argument(
        "--fresh", action="store_true", help="with --init: train this stage's part from scratch"
    )
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    stage, cfg = args.stage, stage_config(params, args.stage)
    device = resolve_device(params["train"].get("device", "auto"))
    net = initial_network(params, stage, args.out, args.init, args.fresh)
    init_file = args.init or (
        args.out / f"{PREVIOUS[stage]}.safetensors" if stage in PREVIOUS else None
    )
    key = json.dumps(
        [vars(cfg), params["model"], file_sha256(init_file) if init_file else None, args.fresh],
        sort_keys=True,
    )
    state = args.state_dir / f"{stage}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"
    images = stack_images(read_pack(args.prepared / "train.npz"), device)
    val = read_pack(args.prepared / "val.npz")

    setup(params.get("mlflow", {}).get("experiment", "hndsr"))
    with (
        mlflow.start_run(run_name=f"train_{stage}"),
        Progress(
            TextColumn(f"[bold]{stage}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        ) as bar,
    ):
        mlflow.set_tags({"stage": stage, "device": device, "resumed": str(state.exists())})
        mlflow.log_params(flatten({"stage": vars(cfg), "model": params["model"]}))
        task = bar.add_task(stage, total=cfg.steps)
        report = train_stages(
            net,
            [stage],
            images,
            val,
            params,
            device,
            lambda _: state,
            on_log=lambda _, step, m: log_metrics(m, step),
            on_step=lambda _, step, __: bar.update(task, completed=step),
        )
        net.cpu()
        result = report[stage]
        card: dict = {
            "stage": stage,
            "result": result,
            "device": device,
            "schedule": cfg.schedule,
            "degradations": DegradationConfig.from_dict(cfg.degradations).__dict__,
        }
        if init_file is not None and card_path(init_file).is_file():
            card["init"] = json.loads(card_path(init_file).read_text())
        if stage == "refiner":
            card["diffusion_tuning"] = report["diffusion_tuning"]
            chosen = card["diffusion_tuning"]["chosen"]
            mlflow.log_metrics({f"tuned_{k}": v for k, v in grid_metrics(chosen).items()})
        args.out.mkdir(parents=True, exist_ok=True)
        weights = args.out / f"{stage}.safetensors"
        save_checkpoint(net, weights, card)
        png = args.out / f"{stage}_samples.png"
        comparison_png(HNDSRUpscaler(net, "samples"), val[:3], stage, png)
        (args.out / f"{stage}_metrics.json").write_text(json.dumps(card, indent=2) + "\n")
        for path in (weights, weights.with_suffix(".json"), png):
            mlflow.log_artifact(str(path))
        mlflow.log_metrics({f"final_{k}": float(v) for k, v in result.items()})


if __name__ == "__main__":
    main()
