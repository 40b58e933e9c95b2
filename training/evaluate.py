"""DVC stage `evaluate` (also ``python -m training.evaluate``): the test-split report.

For every scale (1.1 ... 8 and an anisotropic pair) and every test image: the three
non-learned baselines, `fast`, `diffusion` and the "fast + matched HF noise" control, scored
by PSNR / SSIM on the luma with a ceil(s) border shave and by the HF-energy ratio SR/HR.
Writes ``eval.json``, ``eval.md`` (the table), ``gain.png`` (gain over the best baseline vs
scale) and ``samples.png`` (side-by-side crops), checks the acceptance gates, and logs all
of it to MLflow.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import mlflow
import numpy as np
import torch
import yaml
from rich.progress import Progress

from sr_engine.checkpoint import load_checkpoint
from training.data import read_pack
from training.protocol import (
    BASELINES,
    PSF_SIGMA,
    baseline,
    make_eval_pair,
    model_sr,
    noise_control,
    scores,
)
from training.quality import luma, psnr
from training.samples import comparison_png
from training.tracking import setup

METHODS = (*BASELINES, "fast", "diffusion", "diffusion_mean", "fast+noise")


def label(scale: tuple[float, float]) -> str:
    """x2, x2.5 or x2x3 (anisotropic)."""
    fmt = lambda s: f"{s:g}"  # noqa: E731
    return f"x{fmt(scale[0])}" if scale[0] == scale[1] else f"x{fmt(scale[0])}x{fmt(scale[1])}"


def evaluate_scale(up, images, scale, seed: int, advance) -> dict:
    """Mean scores of every method at one scale."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for img in images:
        hr, lr = make_eval_pair(img, scale)
        size = (int(hr.shape[-2]), int(hr.shape[-1]))
        outs = {b: baseline(b, lr, size) for b in BASELINES}
        outs["fast"] = model_sr(up, lr, size, scale, "fast")
        outs["diffusion"] = model_sr(up, lr, size, scale, "diffusion", seed)
        # temperature 0: only the refiner's conditional mean, no sampled texture
        outs["diffusion_mean"] = model_sr(up, lr, size, scale, "diffusion", seed, temperature=0.0)
        results = {name: scores(sr, hr, scale) for name, sr in outs.items()}
        results["fast+noise"] = noise_control(outs["fast"], outs["diffusion"], hr, scale, seed)
        for name, values in results.items():
            for key, value in values.items():
                acc[name][key].append(value)
        advance()
    methods = {m: {k: float(np.mean(v)) for k, v in acc[m].items()} for m in METHODS}
    best = max(BASELINES, key=lambda b: methods[b]["psnr"])
    best_psnr = methods[best]["psnr"]
    return {
        "scale": list(scale),
        "label": label(scale),
        "methods": methods,
        "best_baseline": best,
        "fast_gain_db": methods["fast"]["psnr"] - best_psnr,
        "diffusion_gain_db": methods["diffusion"]["psnr"] - best_psnr,
        "diffusion_minus_fast_db": methods["diffusion"]["psnr"] - methods["fast"]["psnr"],
        "diffusion_minus_noise_db": methods["diffusion"]["psnr"] - methods["fast+noise"]["psnr"],
        "mean_minus_fast_db": methods["diffusion_mean"]["psnr"] - methods["fast"]["psnr"],
    }


def robustness_rows(up, images, kernels, scales, advance) -> list[dict]:
    """`fast` against the best baseline on LR made by other kernels than the protocol's."""
    rows = []
    for kernel in kernels:
        for s in scales:
            acc: dict = defaultdict(list)
            for img in images:
                hr, lr = make_eval_pair(img, (s, s), kernel)
                size = (int(hr.shape[-2]), int(hr.shape[-1]))
                outs = {b: baseline(b, lr, size) for b in BASELINES}
                outs["fast"] = model_sr(up, lr, size, (s, s), "fast")
                for name, sr in outs.items():
                    acc[name].append(scores(sr, hr, (s, s))["psnr"])
                advance()
            psnrs = {m: float(np.mean(v)) for m, v in acc.items()}
            best = max(BASELINES, key=lambda b: psnrs[b])
            rows.append(
                {
                    "kernel": kernel,
                    "scale": s,
                    "psnr": psnrs,
                    "best_baseline": best,
                    "fast_gain_db": psnrs["fast"] - psnrs[best],
                }
            )
    return rows


def autoencoder_psnr(up, images) -> dict:
    """The autoencoder's HR reconstruction PSNR (RGB and luma) on the given images."""
    rgb, y = [], []
    with torch.no_grad():
        for img in images:
            hr = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0
            rec = up.net.ae(hr).clamp(0, 1)
            rgb.append(float(psnr(rec, hr)[0]))
            y.append(float(psnr(luma(rec), luma(hr))[0]))
    return {"rgb_psnr": float(np.mean(rgb)), "y_psnr": float(np.mean(y))}


def check_gates(rows: list[dict]) -> dict[str, bool]:
    """The acceptance gates of issue 3."""
    by = {r["label"]: r for r in rows}

    def closer(r: dict) -> bool:
        m = r["methods"]
        return abs(1 - m["diffusion"]["hf_ratio"]) < abs(1 - m["fast"]["hf_ratio"])

    return {
        "fast_beats_best_baseline_everywhere": all(r["fast_gain_db"] > 0 for r in rows),
        "fast_gain_x2_ge_1.0": by.get("x2", {}).get("fast_gain_db", 0) >= 1.0,
        "fast_gain_x3_ge_0.7": by.get("x3", {}).get("fast_gain_db", 0) >= 0.7,
        "fast_gain_x4_ge_0.7": by.get("x4", {}).get("fast_gain_db", 0) >= 0.7,
        "diffusion_beats_best_baseline_everywhere": all(r["diffusion_gain_db"] > 0 for r in rows),
        "diffusion_within_1db_of_fast": all(r["diffusion_minus_fast_db"] >= -1.0 for r in rows),
        "diffusion_hf_ratio_closer_to_1": all(closer(r) for r in rows),
        "diffusion_beats_matched_noise": all(r["diffusion_minus_noise_db"] > 0 for r in rows),
    }


def markdown(report: dict) -> str:
    """The evaluation table (PSNR dB / SSIM / HF ratio) as Markdown."""
    head = (
        "| scale | PIL bicubic | torch bicubic | Lanczos | fast | diffusion | fast+noise "
        "| fast gain | diff - fast | diff - (fast+noise) | mean - fast | SSIM fast / diff "
        "| HF ratio fast / diff |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in report["rows"]:
        m = r["methods"]
        p = {k: f"{v['psnr']:.2f}" for k, v in m.items()}
        lines.append(
            f"| {r['label']} | {p['pil_bicubic']} | {p['torch_bicubic']} | {p['lanczos']} "
            f"| {p['fast']} | {p['diffusion']} | {p['fast+noise']} | {r['fast_gain_db']:+.2f} "
            f"| {r['diffusion_minus_fast_db']:+.2f} | {r['diffusion_minus_noise_db']:+.3f} "
            f"| {r['mean_minus_fast_db']:+.3f} "
            f"| {m['fast']['ssim']:.4f} / {m['diffusion']['ssim']:.4f} "
            f"| {m['fast']['hf_ratio']:.3f} / {m['diffusion']['hf_ratio']:.3f} |"
        )
    robust = "".join(
        f"| {r['kernel']} | x{r['scale']:g} | {r['psnr'][r['best_baseline']]:.2f} "
        f"({r['best_baseline']}) | {r['psnr']['fast']:.2f} | {r['fast_gain_db']:+.2f} |\n"
        for r in report.get("robustness", [])
    )
    if robust:
        robust = (
            "\n\nOther degradations of the same test images (LR by area averaging or a "
            f"Gaussian PSF of sigma {PSF_SIGMA:g} x scale, unshifted, 8 bits; not a gate):\n\n"
            "| LR made by | scale | best baseline | fast | fast gain |\n|---|---|---|---|---|\n"
            + robust
        )
    ae = report["autoencoder"]
    gates = "\n".join(f"- {k}: {'PASS' if v else 'FAIL'}" for k, v in report["gates"].items())
    return (
        f"PSNR (dB) on the luma, border shaved by ceil(s); {report['images']} test images; "
        f"model {report['version']}; fast gain = fast - best baseline; mean = the diffusion "
        f"mode at temperature 0 (the refiner's conditional mean, no sampled texture).\n\n{head}"
        + "\n".join(lines)
        + robust.rstrip("\n")
        + f"\n\nAutoencoder reconstruction PSNR (test): {ae['rgb_psnr']:.2f} dB RGB, "
        f"{ae['y_psnr']:.2f} dB luma.\n\nGates:\n{gates}\n"
    )


def plot(rows: list[dict], path: Path) -> None:
    """Gain over the best baseline vs scale, `fast` and `diffusion` (isotropic scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iso = [r for r in rows if r["scale"][0] == r["scale"][1]]
    s = [r["scale"][0] for r in iso]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(s, [r["fast_gain_db"] for r in iso], "o-", label="fast")
    ax.plot(s, [r["diffusion_gain_db"] for r in iso], "s--", label="diffusion")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(xlabel="scale", ylabel="PSNR gain over best baseline (dB)", xscale="log")
    ax.set_xticks(s, [f"{v:g}" for v in s])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--checkpoint", type=Path, default=Path("artifacts/train/refiner.safetensors")
    )
    parser.add_argument("--prepared", type=Path, default=Path("artifacts/prepared"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/eval"))
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    ev = params["evaluate"]
    up = load_checkpoint(args.checkpoint, device="cpu")
    images = read_pack(args.prepared / "test.npz")
    if ev.get("max_images"):
        images = images[: int(ev["max_images"])]
    scales = [(float(s), float(s)) for s in ev["scales"]]
    scales += [(float(a), float(b)) for a, b in ev.get("anisotropic", [])]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    kernels, robust_scales = ev.get("robustness_kernels", []), ev.get("robustness_scales", [])
    total = (len(scales) + len(kernels) * len(robust_scales)) * len(images)
    with Progress() as bar:
        task = bar.add_task("evaluate", total=total)
        for scale in scales:
            rows.append(
                evaluate_scale(up, images, scale, int(ev.get("seed", 0)), lambda: bar.advance(task))
            )
        robust = robustness_rows(
            up, images, kernels, [float(s) for s in robust_scales], lambda: bar.advance(task)
        )
    report: dict = {
        "version": up.version,
        "checkpoint_sha256": up.card.get("weights_sha256"),
        "images": len(images),
        "rows": rows,
        "robustness": robust,
        "autoencoder": autoencoder_psnr(up, images),
        "diffusion": {"steps": up.net.cfg.steps, "temperature": up.net.cfg.temperature},
    }
    report["gates"] = check_gates(rows)
    (args.out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "eval.md").write_text(markdown(report))
    plot(rows, args.out / "gain.png")
    comparison_png(up, images[:4], "evaluate", args.out / "samples.png")
    print(markdown(report))

    setup(params.get("mlflow", {}).get("experiment", "hndsr"))
    with mlflow.start_run(run_name="evaluate"):
        mlflow.set_tags({"stage": "evaluate", "model_version": up.version})
        mlflow.log_params({"checkpoint": str(args.checkpoint), "images": len(images)})
        for r in rows:
            tag = r["label"].replace(".", "_")
            for m in METHODS:
                mlflow.log_metric(f"{m.replace('+', '_')}_psnr_{tag}", r["methods"][m]["psnr"])
            mlflow.log_metric(f"fast_gain_db_{tag}", r["fast_gain_db"])
            mlflow.log_metric(f"diffusion_minus_fast_db_{tag}", r["diffusion_minus_fast_db"])
            mlflow.log_metric(f"diffusion_minus_noise_db_{tag}", r["diffusion_minus_noise_db"])
            mlflow.log_metric(f"mean_minus_fast_db_{tag}", r["mean_minus_fast_db"])
        for r in robust:
            mlflow.log_metric(f"fast_gain_db_{r['kernel']}_x{r['scale']:g}", r["fast_gain_db"])
        mlflow.log_metric("autoencoder_rgb_psnr", report["autoencoder"]["rgb_psnr"])
        mlflow.log_metrics({f"gate_{k}": float(v) for k, v in report["gates"].items()})
        for name in ("eval.json", "eval.md", "gain.png", "samples.png"):
            mlflow.log_artifact(str(args.out / name))


if __name__ == "__main__":
    main()
