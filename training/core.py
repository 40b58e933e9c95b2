"""The HNDSR training driver: the three stages as plain loops (torch + numpy only).

Stage 1 trains the autoencoder, stage 2 the neural operator, stage 3 the diffusion refiner;
each freezes the others. A stage stops at ``steps`` or ``seconds`` (whichever comes first),
follows the learning-rate schedule named in its config (``SCHEDULES``), saves a resumable
state (weights, optimizer, step, elapsed time, RNG) every ``ckpt_every`` steps and at the
end, and resumes from it when started again. ``train_stages`` runs a sequence of stages and
tunes the diffusion sampler after the refiner; both entry points call it (one stage per
DVC stage in training/train.py, all three on a time budget in training/gpu_train.py).
Logging and progress go through callbacks, so MLflow and progress bars stay at the edges
and the GPU script needs neither.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sr_engine.bicubic import bicubic_at
from sr_engine.model import HNDSR, HNDSRUpscaler, alpha_bar, regular_inputs
from training.data import make_pair, sample_batch
from training.degradations import DegradationConfig
from training.protocol import tune_diffusion

STAGES = ("autoencoder", "operator", "refiner")


@dataclass
class StageConfig:
    """Knobs of one stage (a section of params.yaml)."""

    steps: int = 1000
    seconds: float = 0.0  # wall-clock budget; 0 = none
    batch: int = 16
    patch: int = 64
    lr: float = 1e-3
    scale_min: float = 1.1
    scale_max: float = 8.0
    aniso_prob: float = 0.2
    degradations: dict = field(default_factory=dict)  # DegradationConfig; {} = protocol only
    log_every: int = 50
    ckpt_every: int = 200
    seed: int = 0
    schedule: str = "cosine"  # a name in SCHEDULES

    @classmethod
    def from_dict(cls, data: dict) -> StageConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


SCHEDULES: dict[str, Callable[[float], float]] = {
    "cosine": lambda p: 0.1 + 0.45 * (1 + math.cos(math.pi * p)),  # cosine decay to 10 %
    "constant": lambda p: 1.0,
}


def learning_rate(cfg: StageConfig, progress: float) -> float:
    """The stage's learning rate at ``progress`` in [0, 1] of its steps or seconds."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; expected one of {list(SCHEDULES)}")
    return cfg.lr * SCHEDULES[cfg.schedule](min(progress, 1.0))


def stage_config(params: dict, stage: str, **overrides) -> StageConfig:
    """The stage's params.yaml section plus the shared logging knobs and seed."""
    train = params["train"]
    shared = {k: train[k] for k in ("log_every", "ckpt_every", "seed") if k in train}
    return StageConfig.from_dict({**shared, **train[stage], **overrides})


def make_training_pair(hr: torch.Tensor, cfg: StageConfig, rng: np.random.Generator):
    """(lr, scale, origins) for a HR batch under the stage's scale range and degradations."""
    deg = DegradationConfig.from_dict(cfg.degradations)
    return make_pair(hr, rng, cfg.scale_min, cfg.scale_max, cfg.aniso_prob, deg)


def part_of(net: HNDSR, stage: str) -> torch.nn.Module:
    """The sub-network a stage trains."""
    return {"autoencoder": net.ae, "operator": net.operator, "refiner": net.refiner}[stage]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10.0 * torch.log10(F.mse_loss(a.clamp(0, 1), b).clamp_min(1e-12)))


def autoencoder_step(net, images, cfg, rng, device, want_metrics):
    """Reconstruction (L1) of random HR patches."""
    hr = sample_batch(images, cfg.batch, cfg.patch, rng, device)
    out = net.ae(hr)
    loss = F.l1_loss(out, hr) + F.mse_loss(out, hr)
    metrics = {"recon_psnr": _psnr(out.detach(), hr)} if want_metrics else {}
    return loss, metrics


def operator_step(net, images, cfg, rng, device, want_metrics):
    """L1 of the operator's output at a random continuous (maybe anisotropic) scale."""
    hr = sample_batch(images, cfg.batch, cfg.patch, rng, device)
    lr, scale, origins = make_training_pair(hr, cfg, rng)
    coords, cell = regular_inputs(lr, scale, hr.shape[-2:], origins)
    pred = net.operator(lr, coords, cell)[0]
    loss = F.l1_loss(pred, hr)
    metrics = {}
    if want_metrics:
        with torch.no_grad():
            base = bicubic_at(lr, coords)
            metrics = {
                "psnr": _psnr(pred.detach(), hr),
                "gain_db": _psnr(pred, hr) - _psnr(base, hr),
            }
    return loss, metrics


def latent_residual(net: HNDSR, hr: torch.Tensor, lr: torch.Tensor, scale, origins) -> tuple:
    """(cond E(fast), operator decoder features, E(hr) - E(fast)) for a training pair; no
    gradients."""
    with torch.no_grad():
        size = (int(hr.shape[-2]), int(hr.shape[-1]))
        fast, hidden = net.operator(lr, *regular_inputs(lr, scale, size, origins))
        cond = net.ae.encode(fast.clamp(0.0, 1.0))
        return cond, hidden, net.ae.encode(hr) - cond


def refiner_step(net, images, cfg, rng, device, want_metrics):
    """x0-prediction MSE of the normalized latent residual at a random diffusion time; a
    quarter of the batch at t = 1 with a zero input (pure noise carries nothing), where the
    prediction is the sampler's conditional mean."""
    hr = sample_batch(images, cfg.batch, cfg.patch, rng, device)
    lr, scale, origins = make_training_pair(hr, cfg, rng)
    cond, hidden, residual = latent_residual(net, hr, lr, scale, origins)
    r0 = residual / net.cfg.residual_scale
    gen = torch.Generator(device=hr.device).manual_seed(int(rng.integers(2**31)))
    t = torch.rand(hr.shape[0], generator=gen, device=hr.device)
    t[: max(1, hr.shape[0] // 4)] = 1.0
    ab = alpha_bar(t)[:, None, None, None]
    eps = torch.randn(r0.shape, generator=gen, device=hr.device)
    z_t = (ab.sqrt() * r0 + (1 - ab).sqrt() * eps) * (t < 1.0)[:, None, None, None]
    x0 = net.refiner(z_t, cond, hidden, t)
    loss = F.mse_loss(x0, r0)
    return loss, ({"x0_mse": float(loss.detach())} if want_metrics else {})


STEP_FNS = {"autoencoder": autoencoder_step, "operator": operator_step, "refiner": refiner_step}


def calibrate_residual_scale(net: HNDSR, images, cfg: StageConfig, device, batches: int = 8):
    """Set ``net.cfg.residual_scale`` to the std of the latent residual (refiner input scale)."""
    rng = np.random.default_rng(cfg.seed + 12345)
    stds = []
    for _ in range(batches):
        hr = sample_batch(images, cfg.batch, cfg.patch, rng, device)
        lr, scale, origins = make_training_pair(hr, cfg, rng)
        stds.append(float(latent_residual(net, hr, lr, scale, origins)[2].std()))
    net.cfg.residual_scale = max(float(np.mean(stds)), 1e-4)


def run_stage(
    stage: str,
    net: HNDSR,
    images: torch.Tensor,
    cfg: StageConfig,
    device: str | torch.device,
    state_path: Path,
    on_log: Callable[[int, dict], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train one stage (resuming from ``state_path`` if present); returns the last metrics."""
    net.to(device)
    for name in STAGES:
        part_of(net, name).requires_grad_(name == stage)
    part = part_of(net, stage)
    opt = torch.optim.Adam(part.parameters(), lr=cfg.lr)
    step, elapsed = 0, 0.0
    rng = np.random.default_rng(cfg.seed)
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        net.load_state_dict(state["net"])
        net.cfg.residual_scale = state["residual_scale"]
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        rng.bit_generator.state = state["rng"]
    elif stage == "refiner":
        calibrate_residual_scale(net, images, cfg, device)

    def save() -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "net": net.state_dict(),
                "residual_scale": net.cfg.residual_scale,
                "opt": opt.state_dict(),
                "step": step,
                "elapsed": elapsed,
                "rng": rng.bit_generator.state,
            },
            state_path,
        )

    step_fn = STEP_FNS[stage]
    metrics: dict = {}
    part.train()
    start = time.perf_counter() - elapsed
    while step < cfg.steps and (cfg.seconds <= 0 or elapsed < cfg.seconds):
        progress = max(step / cfg.steps, elapsed / cfg.seconds if cfg.seconds > 0 else 0.0)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, progress)
        want = (step + 1) % cfg.log_every == 0
        loss, m = step_fn(net, images, cfg, rng, device, want)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        elapsed = time.perf_counter() - start
        if on_step:
            on_step(step, elapsed)
        if want:
            metrics = {"loss": float(loss.detach()), **m, "lr": opt.param_groups[0]["lr"]}
            if on_log:
                on_log(step, metrics)
        if step % cfg.ckpt_every == 0:
            save()
    save()
    part.eval()
    return {**metrics, "steps": step, "seconds": elapsed}


def tune(net: HNDSR, val_images: list, ev: dict, device: str | torch.device = "cpu") -> dict:
    """Set ``net.cfg.steps`` / ``temperature`` from the grid in ``ev`` (params.yaml
    ``evaluate``) on ``tune_images`` validation images; returns the record."""
    best, grid = tune_diffusion(
        HNDSRUpscaler(net, "tuning", device=str(device)),
        val_images[: ev["tune_images"]],
        ev["tune_scales"],
        ev["diffusion_steps"],
        ev["temperatures"],
        ev["max_psnr_drop"],
        ev.get("seed", 0),
    )
    net.cfg.steps, net.cfg.temperature = int(best["steps"]), float(best["temperature"])
    return {"chosen": best, "grid": grid}


def train_stages(
    net: HNDSR,
    stages: list[str],
    images: torch.Tensor,
    val_images: list,
    params: dict,
    device: str | torch.device,
    state_path: Callable[[str], Path],
    overrides: dict[str, dict] | None = None,
    on_log: Callable[[str, int, dict], None] | None = None,
    on_step: Callable[[str, int, StageConfig], None] | None = None,
    on_done: Callable[[str, dict], None] | None = None,
) -> dict:
    """Train ``stages`` in order (each resumable from ``state_path(stage)``) with the
    configs of ``params`` (plus ``overrides[stage]``), then tune the diffusion sampler on
    ``val_images`` after the refiner. ``on_done(stage, report)`` runs after each stage (to
    save a checkpoint). Returns {stage: last metrics, "diffusion_tuning": record}."""
    report: dict = {}
    for stage in stages:
        cfg = stage_config(params, stage, **(overrides or {}).get(stage, {}))

        def log(step: int, metrics: dict, stage: str = stage) -> None:
            if on_log:
                on_log(stage, step, metrics)

        def advance(step: int, _: float, stage: str = stage, cfg: StageConfig = cfg) -> None:
            if on_step:
                on_step(stage, step, cfg)

        report[stage] = run_stage(
            stage, net, images, cfg, device, state_path(stage), on_log=log, on_step=advance
        )
        if stage == "refiner":
            report["diffusion_tuning"] = tune(net, val_images, params["evaluate"], device)
        if on_done:
            on_done(stage, report)
    return report
