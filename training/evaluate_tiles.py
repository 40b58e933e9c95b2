"""DVC stage `evaluate_tiles` (also ``python -m training.evaluate_tiles``): SR where users
see it, through the tile server, on real georeferenced scenes.

For every scene (the 8-bit scenes under ``shared_data/georef`` and the project's Landsat
sample scene), coarse COGs are made by area averaging and by a Gaussian PSF then area
averaging at each scale; a real server (uvicorn subprocess) serves fine and coarse; at the
fine scene's native zoom the coarse scene's tiles (``sr=fast|diffusion|bicubic`` and
TiTiler's overzoom ``sr=off&resampling=X&reproject=X``) are scored against the fine
scene's own tiles by PSNR / SSIM on the luma. Only pixels ``margin`` coarse pixels inside
valid data and inside the scene's test areas (``training.data.scene_areas``) count
(decision 0350). Writes
``eval_tiles.json``, ``eval_tiles.md``, ``eval_tiles.png`` and ``crops/*.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.progress import Progress
from rio_tiler.constants import WEB_MERCATOR_TMS

from sr_engine.checkpoint import DEFAULT_CHECKPOINT
from training.data import scene_areas
from training.quality import luma, ssim_map
from training.tilepath import report
from training.tilepath.scenes import Raster, degrade, read_scene, write_cog
from training.tilepath.select import ScoredTile, choose_tiles, evaluable_mask, request_zoom
from training.tilepath.server import TileArray, TileServer

METHODS: dict[str, dict[str, str]] = {
    "fast": {"sr": "fast"},
    "diffusion": {"sr": "diffusion"},
    "bicubic": {"sr": "bicubic"},
    **{
        f"titiler-{k}": {"sr": "off", "resampling": k, "reproject": k}
        for k in ("nearest", "bilinear", "cubic", "lanczos")
    },
}
TITILER = tuple(m for m in METHODS if m.startswith("titiler-"))
GATE_SCALES = (2, 3, 4)
FAST_MEAN_GAIN_DB = 0.7
SHARED_DATA_ENV = "HNDSR_SHARED_DATA"


@dataclass(frozen=True)
class TileEvalSettings:
    """The ``evaluate_tiles`` section of params.yaml."""

    shared_data: str = "../shared/data"  # $HNDSR_SHARED_DATA wins; absent: sample scene only
    georef: list[str] = field(default_factory=lambda: ["georef/*.tif"])
    sample_scene: bool = True
    scene_dir: str = ""  # where the sample scene is (built when missing); "": data.scene_dir
    scales: list[int] = field(default_factory=lambda: list(GATE_SCALES))
    degradations: list[str] = field(default_factory=lambda: ["area", "psf"])
    psf_sigma: float = 0.5  # x scale, in fine pixels
    tiles: int = 4  # per scene (the same tiles at every scale and degradation)
    tile_size: int = 256  # px; requested at the zoom with the native zoom's resolution
    min_fraction: float = 0.1  # of a tile's pixels scored, for the tile to count
    margin: int = 3  # coarse pixels of valid data around every tile (kernel support)
    test_areas: bool = True  # only tiles inside training.data.scene_areas(path)["test"]
    reference_resampling: str = "nearest"  # the fine scene's own tiles (sr=off)
    # informational: every method scored again against the fine scene served with this
    # resampling, and that rendering against the reference (the ceiling); "" skips both
    alternative_reference: str = "lanczos"
    methods: list[str] = field(default_factory=lambda: list(METHODS))

    @classmethod
    def from_params(cls, params: dict) -> TileEvalSettings:
        """Settings from a params.yaml mapping (its ``evaluate_tiles`` section)."""
        section = dict(params.get("evaluate_tiles") or {})
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown evaluate_tiles settings: {sorted(unknown)}")
        section.setdefault("scene_dir", (params.get("data") or {}).get("scene_dir", "data"))
        settings = cls(**section)
        bad = set(settings.methods) - set(METHODS)
        if bad or "fast" not in settings.methods:
            raise ValueError(f"methods must include fast and come from {list(METHODS)}")
        return settings


def find_scenes(settings: TileEvalSettings) -> list[Path]:
    """The scenes to evaluate; prints why the shared ones are missing when they are."""
    root = Path(os.environ.get(SHARED_DATA_ENV) or settings.shared_data)
    scenes: list[Path] = []
    if settings.georef:
        if root.is_dir():
            scenes += sorted({p for pattern in settings.georef for p in root.glob(pattern)})
        else:
            print(f"no shared data at {root} (set {SHARED_DATA_ENV}): sample scene only")
    if settings.sample_scene:
        from cogs.cli import DEFAULT_CACHE_DIR
        from cogs.sample_scene import RGB8, build_sample_scene, scene_dir

        data_dir = Path(settings.scene_dir or "data")
        build_sample_scene(data_dir, DEFAULT_CACHE_DIR)
        scenes.append(scene_dir(data_dir) / f"{RGB8}.tif")
    if not scenes:
        raise SystemExit("no scene to evaluate")
    return scenes


@dataclass
class PreparedScene:
    """A scene's fine COG, its coarse COGs by (degradation, scale) and the grid to select on."""

    name: str
    source: Path
    fine: Path
    coarse: dict[tuple[str, int], Path]
    raster: Raster


def prepare_scene(source: Path, folder: Path, settings: TileEvalSettings) -> PreparedScene:
    """Write the fine COG and every coarse version of ``source`` under ``folder``."""
    folder.mkdir(parents=True)
    fine = read_scene(source)
    write_cog(fine, folder / "fine.tif")
    coarse = {}
    for degradation in settings.degradations:
        for scale in settings.scales:
            path = folder / f"{degradation}_x{scale}.tif"
            write_cog(degrade(fine, degradation, scale, settings.psf_sigma), path)
            coarse[(degradation, scale)] = path
    return PreparedScene(source.stem, source, folder / "fine.tif", coarse, fine)


SSIM_RADIUS = 5  # the 11x11 SSIM window: a position counts when its whole window is scored


def scores(tiles: list[TileArray], refs: list[TileArray], masks: list[np.ndarray]) -> dict:
    """PSNR of the mean squared error over every scored luma pixel of the tiles, SSIM
    averaged over every 11x11 window inside the scored pixels, and their counts."""

    def to_y(ts: list[TileArray]) -> torch.Tensor:
        rgb = np.stack([t.values[:3] for t in ts]).astype(np.float64) / 255.0
        return luma(torch.from_numpy(rgb))

    a, b = to_y(tiles), to_y(refs)
    mask = torch.from_numpy(np.stack(masks))[:, None]
    mse = float(((a - b) ** 2)[mask].mean())
    windows = -torch.nn.functional.max_pool2d(-mask.double(), 2 * SSIM_RADIUS + 1, stride=1) > 0
    local = ssim_map(a, b)[windows]
    return {
        "psnr": -10.0 * float(np.log10(max(mse, 1e-12))),
        "ssim": float(local.mean()) if local.numel() else float("nan"),
        "pixels": int(mask.sum()),
    }


def _check(tile: TileArray, method: str, where: str) -> None:
    expected = METHODS[method]["sr"]
    if tile.sr_mode != expected:
        raise RuntimeError(f"{where}: asked sr={expected}, the server applied {tile.sr_mode!r}")


@dataclass
class SceneResult:
    """One scene's rows against the reference and against the alternative reference, the
    alternative rendering scored against the reference (the ceiling), and crop samples."""

    rows: list[dict] = field(default_factory=list)
    alternative_rows: list[dict] = field(default_factory=list)
    ceiling: dict | None = None
    samples: dict = field(default_factory=dict)


def evaluate_scene(
    server: TileServer, scene: PreparedScene, settings: TileEvalSettings, bar: Progress, task
) -> SceneResult:
    """Rows of one scene (every degradation, scale and method), its ceiling and samples."""
    zoom = request_zoom(server.native_zoom(scene.fine), settings.tile_size)
    windows = scene_areas(scene.source)["test"] if settings.test_areas else None
    ok = evaluable_mask(scene.raster, settings.scales, settings.margin, windows)
    chosen: list[ScoredTile] = choose_tiles(
        WEB_MERCATOR_TMS, zoom, settings.tile_size, scene.raster, ok, settings.tiles,
        settings.min_fraction,
    )  # fmt: skip
    size = settings.tile_size

    def fine_tiles(resampling: str) -> list[TileArray]:
        query = {"sr": "off", "resampling": resampling, "reproject": resampling}
        tiles = [c.tile for c in chosen]
        return [server.tile(scene.fine, t.z, t.x, t.y, size, **query) for t in tiles]

    refs = fine_tiles(settings.reference_resampling)
    masks = [c.mask & r.valid for c, r in zip(chosen, refs, strict=True)]
    alternative = settings.alternative_reference
    alt_refs = fine_tiles(alternative) if alternative else []
    alt_masks = [m & r.valid for m, r in zip(masks, alt_refs, strict=True)]
    cases = len(settings.degradations) * len(settings.scales)
    bar.advance(task, (settings.tiles - len(chosen)) * len(settings.methods) * cases)
    if not chosen:
        print(f"{scene.name}: no {size}-px tile at z{zoom} with scored pixels (skipped)")
        return SceneResult()
    result = SceneResult()
    if alternative:
        result.ceiling = {"scene": scene.name, **scores(alt_refs, refs, alt_masks)}
    for (degradation, scale), path in scene.coarse.items():
        key = (scene.name, degradation, scale)
        result.samples[key] = {"fine": refs[0].values}
        for method in settings.methods:
            bar.update(task, description=f"{scene.name[:24]} {degradation} x{scale} {method}")
            served = []
            for c in chosen:
                tile = server.tile(path, c.tile.z, c.tile.x, c.tile.y, size, **METHODS[method])
                _check(tile, method, f"{scene.name} {degradation} x{scale} {c.tile}")
                served.append(tile)
                bar.advance(task)
            result.samples[key][method] = served[0].values
            row = {"scene": scene.name, "degradation": degradation, "scale": scale}
            row.update(method=method, tiles=len(chosen))
            valid = [m & t.valid for m, t in zip(masks, served, strict=True)]
            result.rows.append({**row, **scores(served, refs, valid)})
            if alternative:
                valid = [m & t.valid for m, t in zip(alt_masks, served, strict=True)]
                result.alternative_rows.append({**row, **scores(served, alt_refs, valid)})
    return result


def _gain(
    rows: list[dict], method: str, against: tuple[str, ...]
) -> dict[tuple[str, str, int], float]:
    """``method`` minus the best of ``against``, per (scene, degradation, scale)."""
    by: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    for r in rows:
        by[(r["scene"], r["degradation"], r["scale"])][r["method"]] = r["psnr"]
    return {
        k: v[method] - max(v[m] for m in against if m in v)
        for k, v in by.items()
        if method in v and any(m in v for m in against)
    }


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per scale: gains averaged over scenes (each scene the mean of its degradations) and
    the smallest `fast` gain over any scene and degradation."""

    def over_scenes(gains: dict[tuple[str, str, int], float], scale: int) -> float:
        per_scene: dict[str, list[float]] = defaultdict(list)
        for (scene, _, s), g in gains.items():
            if s == scale:
                per_scene[scene].append(g)
        return (
            float(np.mean([np.mean(v) for v in per_scene.values()])) if per_scene else float("nan")
        )

    fast = _gain(rows, "fast", TITILER)
    diffusion = _gain(rows, "diffusion", TITILER)
    bicubic = _gain(rows, "bicubic", ("titiler-cubic",))
    summary = {}
    for scale in sorted({r["scale"] for r in rows}):
        summary[str(scale)] = {
            "fast_minus_best_titiler_mean": over_scenes(fast, scale),
            "fast_minus_best_titiler_min": min(g for k, g in fast.items() if k[2] == scale),
            "diffusion_minus_best_titiler_mean": over_scenes(diffusion, scale),
            "bicubic_minus_titiler_cubic_mean": over_scenes(bicubic, scale),
        }
    return summary


def ship_gates(result: dict) -> list[dict]:
    """The ship gates of a tile-path result (``eval_tiles.json``).

    Blocking, at each of 2x/3x/4x: `fast` beats the best TiTiler overzoom (the best of
    nearest/bilinear/cubic/lanczos per scene, degradation and scale) by >= +0.7 dB
    averaged over scenes (both degradations pooled), and by >= 0 on every scene under
    every degradation; a result missing one of those scales fails. Informational
    (``blocking: False``): `diffusion` >= the best TiTiler overzoom and `sr=bicubic` >=
    TiTiler's cubic - 0.1 dB, averaged over scenes.
    """
    summary = summarize(result["rows"])
    present = [s for s in GATE_SCALES if str(s) in summary]
    gates = [_gate("scales_2_3_4_evaluated", len(present), len(GATE_SCALES), True)]
    for s in present:
        v = summary[str(s)]
        gates += [
            _gate(
                f"fast_minus_best_titiler_mean_x{s}",
                v["fast_minus_best_titiler_mean"],
                FAST_MEAN_GAIN_DB,
                True,
            ),
            _gate(f"fast_minus_best_titiler_min_x{s}", v["fast_minus_best_titiler_min"], 0.0, True),
            _gate(
                f"diffusion_minus_best_titiler_mean_x{s}",
                v["diffusion_minus_best_titiler_mean"],
                0.0,
                False,
            ),
            _gate(
                f"bicubic_minus_titiler_cubic_mean_x{s}",
                v["bicubic_minus_titiler_cubic_mean"],
                -0.1,
                False,
            ),
        ]
    return gates


def _gate(name: str, value: float, threshold: float, blocking: bool) -> dict[str, Any]:
    passed = bool(np.isfinite(value) and value >= threshold)
    return {
        "name": name,
        "value": float(value),
        "threshold": threshold,
        "passed": passed,
        "blocking": blocking,
    }


def evaluate(checkpoint: Path, settings: TileEvalSettings, workdir: Path) -> tuple[dict, dict]:
    """The tile-path result (the ``eval_tiles.json`` document) and the crop samples."""
    start = time.monotonic()
    sources = find_scenes(settings)
    data_dir = workdir / "data"
    with Progress() as bar:
        prep = bar.add_task("coarse COGs", total=len(sources))
        scenes = []
        for source in sources:
            scenes.append(prepare_scene(source, data_dir / source.stem, settings))
            bar.advance(prep)
        per_scene = len(settings.degradations) * len(settings.scales) * len(settings.methods)
        task = bar.add_task("tiles", total=len(scenes) * settings.tiles * per_scene)
        with TileServer(data_dir, checkpoint, workdir) as server:
            model = server.model()
            if not model.get("loaded"):
                raise SystemExit(f"the server could not load {checkpoint}: {model.get('error')}")
            done = [evaluate_scene(server, scene, settings, bar, task) for scene in scenes]
    rows = [row for d in done for row in d.rows]
    if not rows:
        raise SystemExit("no scene had a tile with scored pixels")
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model_version": model["version"],
        "settings": asdict(settings),
        "scenes": [str(s.source) for s in scenes],
        "rows": rows,
        "summary": summarize(rows),
    }
    if settings.alternative_reference:
        alternative_rows = [row for d in done for row in d.alternative_rows]
        result["alternative"] = {
            "reference_resampling": settings.alternative_reference,
            "rows": alternative_rows,
            "summary": summarize(alternative_rows),
            "ceilings": [d.ceiling for d in done if d.ceiling is not None],
        }
    samples = {key: value for d in done for key, value in d.samples.items()}
    result["gates"] = ship_gates(result)
    result["passed"] = all(g["passed"] for g in result["gates"] if g["blocking"])
    result["seconds"] = round(time.monotonic() - start, 1)
    return result, samples


def write_outputs(result: dict, samples: dict, out: Path) -> None:
    """Write the four outputs into ``out`` (staged beside it, then moved in)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (stage / "eval_tiles.json").write_text(json.dumps(result, indent=2) + "\n")
        (stage / "eval_tiles.md").write_text(report.markdown(result))
        report.plot(result, stage / "eval_tiles.png")
        report.crops(samples, stage / "crops")
        out.mkdir(exist_ok=True)
        shutil.rmtree(out / "crops", ignore_errors=True)
        for item in stage.iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/eval_tiles"))
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    settings = TileEvalSettings.from_params(yaml.safe_load(args.params.read_text()))
    # SIGTERM unwinds like Ctrl-C: the server subprocess is stopped, the temp folder removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="hndsr-eval-tiles-") as tmp:
        result, samples = evaluate(args.checkpoint, settings, Path(tmp))
    write_outputs(result, samples, args.out)
    print(report.markdown(result))
    print(f"{result['seconds']} s; wrote {args.out}/eval_tiles.{{json,md,png}} and crops/")


if __name__ == "__main__":
    main()
