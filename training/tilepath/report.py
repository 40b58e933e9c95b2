"""The tile-path evaluation's report: Markdown table, gain plot and side-by-side crops."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

TITILER = ("titiler-nearest", "titiler-bilinear", "titiler-cubic", "titiler-lanczos")
SR_METHODS = ("bicubic", "fast", "diffusion")
CROP_METHODS = ("titiler-cubic", "titiler-lanczos", "bicubic", "fast", "diffusion")
CROP_PX = 128


def _cases(rows: list[dict]) -> dict[tuple[str, str, int], dict[str, dict]]:
    cases: dict[tuple[str, str, int], dict[str, dict]] = defaultdict(dict)
    for r in rows:
        cases[(r["scene"], r["degradation"], r["scale"])][r["method"]] = r
    return cases


def _methods(rows: list[dict]) -> list[str]:
    return [m for m in (*TITILER, *SR_METHODS) if any(r["method"] == m for r in rows)]


def _names(methods: list[str]) -> str:
    return " | ".join(m.replace("titiler-", "TiTiler ") for m in methods)


GAIN_KEYS = (
    "fast_minus_best_titiler_mean",
    "fast_minus_best_titiler_min",
    "diffusion_minus_best_titiler_mean",
    "bicubic_minus_titiler_cubic_mean",
)


def averages(result: dict) -> str:
    """Per scale: each method's PSNR averaged over scenes and degradations, and the gains
    of the gates (mean over scenes, both degradations pooled; min over scene x degradation)."""
    methods = _methods(result["rows"])
    head = (
        f"| scale | {_names(methods)} | fast - best TiTiler (mean / min) "
        f"| diffusion - best TiTiler | bicubic - TiTiler cubic |\n"
        f"|---|{'---|' * len(methods)}---|---|---|\n"
    )
    lines = []
    for scale, v in result["summary"].items():
        mean = {
            m: np.mean(
                [r["psnr"] for r in result["rows"] if r["method"] == m and str(r["scale"]) == scale]
            )
            for m in methods
        }
        cells = " | ".join(f"{mean[m]:.2f}" for m in methods)
        gains = (
            f"{v[GAIN_KEYS[0]]:+.2f} / {v[GAIN_KEYS[1]]:+.2f} | {v[GAIN_KEYS[2]]:+.2f} "
            f"| {v[GAIN_KEYS[3]]:+.2f}"
        )
        lines.append(f"| x{scale} | {cells} | {gains} |")
    return head + "\n".join(lines) + "\n"


def per_scene(result: dict) -> str:
    """PSNR (and the tiles scored) per scene, degradation and scale."""
    methods = _methods(result["rows"])
    head = (
        f"| scene | degr. | scale | tiles | {_names(methods)} | fast - best TiTiler |\n"
        f"|---|---|---|---|{'---|' * len(methods)}---|\n"
    )
    lines = []
    for (scene, degradation, scale), by in sorted(_cases(result["rows"]).items()):
        best = max(by[m]["psnr"] for m in TITILER if m in by)
        cells = " | ".join(f"{by[m]['psnr']:.2f}" if m in by else "-" for m in methods)
        gain = f"{by['fast']['psnr'] - best:+.2f}" if "fast" in by else "-"
        tiles = next(iter(by.values()))["tiles"]
        lines.append(f"| {scene} | {degradation} | x{scale} | {tiles} | {cells} | {gain} |")
    return head + "\n".join(lines) + "\n"


def gate_lines(result: dict) -> str:
    """One line per gate: value, threshold, PASS/FAIL (informational ones marked)."""
    return "\n".join(
        f"- {g['name']}: {g['value']:+.3f} (threshold {g['threshold']:+.2f}) "
        + ("PASS" if g["passed"] else "FAIL")
        + ("" if g.get("blocking", True) else " (informational)")
        for g in result["gates"]
    )


def alternative(result: dict) -> str:
    """The averages against the alternative reference and each scene's ceiling (the fine
    scene served with the alternative resampling, scored against the reference); "" when
    the result has none."""
    alt = result.get("alternative")
    if not alt:
        return ""
    reference, other = result["settings"]["reference_resampling"], alt["reference_resampling"]
    ceilings = "\n".join(
        f"| {c['scene']} | {c['psnr']:.2f} | {c['ssim']:.4f} |" for c in alt["ceilings"]
    )
    return (
        f"\nAgainst the fine scene served with {other} instead of {reference} (informational; "
        "the gates use the reference above):\n\n"
        + averages(alt)
        + f"\nCeiling: the fine scene itself served with {other}, scored against the "
        f"{reference} reference (what a perfect reconstruction of the fine scene, rendered "
        f"with {other}, would score):\n\n| scene | PSNR | SSIM |\n|---|---|---|\n" + ceilings + "\n"
    )


def markdown(result: dict) -> str:
    """The averages over scenes, the per-scene table, the gates and the alternative
    reference's view."""
    settings = result["settings"]
    scenes = len({r["scene"] for r in result["rows"]})
    return (
        f"Tile-path evaluation of {result['model_version']} on {scenes} scenes: PSNR (dB) on "
        f"the luma of {settings['tile_size']}-px WebMercatorQuad tiles at the fine scene's "
        f"native zoom, the coarse scene's tiles against the fine scene's own (`sr=off`, "
        f"{settings['reference_resampling']}), on pixels {settings['margin']} coarse pixels "
        f"inside valid data{' in the test areas' if settings['test_areas'] else ''}.\n\n"
        "Averages over scenes and degradations:\n\n"
        + averages(result)
        + "\nPer scene:\n\n"
        + per_scene(result)
        + f"\nGates ({'PASS' if result['passed'] else 'FAIL'}):\n{gate_lines(result)}\n"
        + alternative(result)
    )


def plot(result: dict, path: Path) -> None:
    """Gain of `fast` (and `diffusion`) over the best TiTiler overzoom vs scale, per scene;
    one panel per degradation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = _cases(result["rows"])
    degradations = sorted({d for _, d, _ in cases})
    scenes = sorted({s for s, _, _ in cases})
    fig, axes = plt.subplots(
        1, len(degradations), figsize=(5.5 * len(degradations), 3.8), sharey=True, squeeze=False
    )
    axes = axes[0]
    for ax, degradation in zip(axes, degradations, strict=True):
        gains: dict[int, list[float]] = defaultdict(list)
        for scene in scenes:
            keys = sorted(k for k in cases if k[0] == scene and k[1] == degradation)
            scales = [k[2] for k in keys]
            best = [max(cases[k][m]["psnr"] for m in TITILER if m in cases[k]) for k in keys]
            fast = [cases[k]["fast"]["psnr"] - b for k, b in zip(keys, best, strict=True)]
            for scale, gain in zip(scales, fast, strict=True):
                gains[scale].append(gain)
            line = ax.plot(scales, fast, "o-", label=f"{scene[:28]} fast")[0]
            if all("diffusion" in cases[k] for k in keys):
                diff = [cases[k]["diffusion"]["psnr"] - b for k, b in zip(keys, best, strict=True)]
                ax.plot(scales, diff, "x--", color=line.get_color(), alpha=0.6)
        means = sorted((scale, float(np.mean(v))) for scale, v in gains.items())
        ax.plot(*zip(*means, strict=True), "k-", lw=2.5, label="fast, mean over scenes")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.axhline(0.7, color="red", lw=0.8, ls=":", label="gate +0.7 dB (mean)")
        ax.set(title=f"{degradation} (dashed: diffusion)", xlabel="scale")
        ax.set(ylabel="PSNR over best TiTiler overzoom (dB)")
        ax.set_xticks(sorted({k[2] for k in cases}))
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _crop(values: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 -> centre crop (CROP_PX at most) as (h, w, 3)."""
    h, w = values.shape[1:]
    size = min(CROP_PX, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(values[:3, top : top + size, left : left + size].transpose(1, 2, 0))


def crops(samples: dict[tuple[str, str, int], dict[str, np.ndarray]], folder: Path) -> None:
    """One PNG per scene: a row per degradation and scale, columns fine | TiTiler cubic |
    TiTiler lanczos | bicubic | fast | diffusion (the first scored tile, centre crop)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for scene in sorted({k[0] for k in samples}):
        keys = sorted(k for k in samples if k[0] == scene)
        columns = ["fine", *(m for m in CROP_METHODS if m in samples[keys[0]])]
        fig, axes = plt.subplots(
            len(keys), len(columns), figsize=(1.9 * len(columns), 2.0 * len(keys)), squeeze=False
        )
        for row, key in zip(axes, keys, strict=True):
            for ax, column in zip(row, columns, strict=True):
                ax.imshow(_crop(samples[key][column]), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if key == keys[0]:
                    ax.set_title(column.replace("titiler-", "TiTiler "), fontsize=9)
            row[0].set_ylabel(f"{key[1]} x{key[2]}", fontsize=9)
        fig.suptitle(scene, fontsize=10)
        fig.tight_layout()
        fig.savefig(folder / f"{scene}.png", dpi=100)
        plt.close(fig)
