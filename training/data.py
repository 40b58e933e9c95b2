"""ETL: HR images -> content-hash split -> packed patches; LR made on the fly by degradation.

A pack (``<split>.npz``) holds PNG-encoded RGB uint8 images: ``png`` (all bytes, one
array), ``offsets`` (start of each image, plus the end) and ``names``. It needs only numpy
and Pillow to read, so the GPU script can use it without the rest of the project.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from training.degradations import DegradationConfig, degrade_batch

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def split_of(content_sha: str, val: float, test: float) -> str:
    """Deterministic split from the content hash: same bytes, same split, on any machine."""
    u = int(content_sha[:8], 16) / 2**32
    if u < test:
        return "test"
    return "val" if u < test + val else "train"


def list_images(folder: Path) -> list[Path]:
    """Every raster image under ``folder`` (recursive), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def to_uint8_rgb(array: np.ndarray) -> np.ndarray:
    """(bands, H, W) of any dtype -> (H, W, 3) uint8; non-uint8 data get a 2-98 % stretch."""
    bands = array[:3] if array.shape[0] >= 3 else np.repeat(array[:1], 3, axis=0)
    if bands.dtype != np.uint8:
        data = bands.astype(np.float64)
        lo, hi = np.percentile(data, [2, 98])
        bands = np.clip((data - lo) / max(hi - lo, 1e-9) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(bands.transpose(1, 2, 0))


def read_valid(path: Path) -> np.ndarray:
    """(H, W) bool data mask of a raster (GDAL's dataset mask: nodata, alpha or all valid)."""
    import rasterio

    with rasterio.open(path) as src:
        return src.dataset_mask() > 0


def read_rgb(path: Path) -> np.ndarray:
    """Read a PNG/JPEG (Pillow) or TIFF/COG (rasterio) as (H, W, 3) uint8."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as src:
            return to_uint8_rgb(src.read())
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def window_chips(
    rgb: np.ndarray,
    size: int,
    stride: int,
    window: tuple[int, int, int, int] | None = None,
    valid: np.ndarray | None = None,
) -> list[tuple[int, int, np.ndarray]]:
    """(col, row, chip) of every valid, not-flat ``size`` px chip on a grid of step
    ``stride`` inside ``window`` (col0, row0, col1, row1; default the whole image).

    ``valid`` is the (H, W) data mask; without one, pixels that are 0 in every band count
    as nodata."""
    col0, row0, col1, row1 = window or (0, 0, rgb.shape[1], rgb.shape[0])
    valid = rgb.max(axis=2) > 0 if valid is None else valid
    chips = []
    for top in range(row0, row1 - size + 1, stride):
        for left in range(col0, col1 - size + 1, stride):
            chip = rgb[top : top + size, left : left + size]
            if valid[top : top + size, left : left + size].all() and chip.std() > 2.0:
                chips.append((left, top, np.ascontiguousarray(chip)))
    return chips


def scene_chips(scene: Path, size: int, count: int) -> list[np.ndarray]:
    """Up to ``count`` nodata-free ``size`` px chips on a regular grid of a RGB scene."""
    chips = [c for _, _, c in window_chips(read_rgb(scene), size, size)]
    step = max(1, len(chips) // count)
    return chips[::step][:count]


def center_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    """Centre crop (H, W, 3) to ``size`` (no-op when None or larger)."""
    if not size:
        return img
    top, left = max(0, (img.shape[0] - size) // 2), max(0, (img.shape[1] - size) // 2)
    return img[top : top + size, left : left + size]


def encode_png(img: np.ndarray) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def write_pack(path: Path, images: list[bytes], names: list[str]) -> None:
    """Write a pack of PNG-encoded images (see module docstring)."""
    offsets = np.cumsum([0] + [len(b) for b in images]).astype(np.int64)
    blob = np.frombuffer(b"".join(images), dtype=np.uint8)
    np.savez(path, png=blob, offsets=offsets, names=np.array(names))


def read_pack(path: Path) -> list[np.ndarray]:
    """Decode a pack into a list of (H, W, 3) uint8 images."""
    with np.load(path) as pack:
        blob, offsets = pack["png"], pack["offsets"]
    out = []
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        with Image.open(io.BytesIO(blob[a:b].tobytes())) as img:
            out.append(np.asarray(img.convert("RGB")))
    return out


def stack_images(images: list[np.ndarray], device: str | torch.device = "cpu") -> torch.Tensor:
    """Equal-size (H, W, 3) uint8 images -> (N, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(device)


def degrade(hr: torch.Tensor, lr_size: tuple[int, int]) -> torch.Tensor:
    """The evaluation protocol's LR: antialiased bicubic of HR (N, C, H, W), 8-bit rounding."""
    lr = F.interpolate(hr, size=lr_size, mode="bicubic", antialias=True, align_corners=False)
    return (lr.clamp(0.0, 1.0) * 255.0).round() / 255.0


def draw_scale(
    rng: np.random.Generator, scale_min: float, scale_max: float, aniso_prob: float
) -> tuple[float, float]:
    """Log-uniform scale in [min, max]; with ``aniso_prob`` an independent second axis."""
    draw = lambda: float(np.exp(rng.uniform(math.log(scale_min), math.log(scale_max))))  # noqa: E731
    sx = draw()
    return (sx, draw()) if rng.random() < aniso_prob else (sx, sx)


def lr_size_for(patch: int, scale: float) -> int:
    """LR side for an HR side at a scale, keeping the exact scale patch/lr within (1, 8]."""
    return int(min(max(round(patch / scale), math.ceil(patch / 8)), patch - 1))


def sample_batch(
    images: torch.Tensor,
    batch: int,
    patch: int,
    rng: np.random.Generator,
    device: str | torch.device,
) -> torch.Tensor:
    """Random augmented HR patches (batch, 3, patch, patch) float in [0, 1] from (N, 3, H, W)."""
    n, _, height, width = images.shape
    idx = torch.from_numpy(rng.integers(0, n, batch)).to(images.device)
    tops = rng.integers(0, height - patch + 1, batch)
    lefts = rng.integers(0, width - patch + 1, batch)
    rows = torch.from_numpy(tops[:, None] + np.arange(patch)[None]).to(images.device)
    cols = torch.from_numpy(lefts[:, None] + np.arange(patch)[None]).to(images.device)
    crops = images[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, P, P, 3)
    crops = crops.permute(0, 3, 1, 2).to(device=device, dtype=torch.float32) / 255.0
    if rng.random() < 0.5:
        crops = crops.flip(-1)
    if rng.random() < 0.5:
        crops = crops.flip(-2)
    if rng.random() < 0.5:
        crops = crops.transpose(-1, -2)
    return crops.contiguous()


def make_pair(
    hr: torch.Tensor,
    rng: np.random.Generator,
    scale_min: float,
    scale_max: float,
    aniso_prob: float,
    degradations: DegradationConfig | None = None,
) -> tuple[torch.Tensor, tuple[float, float], np.ndarray]:
    """LR for an HR batch at a random continuous scale, each patch degraded by its own draw
    of ``degradations`` (default: the evaluation protocol's antialiased bicubic).

    Returns (lr, exact (sx, sy), output origins (N, 2) in LR px: minus each patch's shift).
    """
    height, width = hr.shape[-2:]
    sx, sy = draw_scale(rng, scale_min, scale_max, aniso_prob)
    h, w = lr_size_for(height, sy), lr_size_for(width, sx)
    lr, origins, _ = degrade_batch(hr, (h, w), rng, degradations or DegradationConfig())
    return lr, (width / w, height / h), origins


AREA_FRACTIONS = (("train", 0.0, 0.55), ("val", 0.55, 0.70), ("test", 0.70, 1.0))
AREA_GUARD_PX = 16  # columns dropped at the start of val and test: no window spans two splits


def scene_areas(path: str | Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """The by-area split of a georeferenced scene: pixel windows ``(col0, row0, col1, row1)``
    (end-exclusive) in the scene's own pixel grid, per split.

    The rule is deterministic and needs only the raster's size: vertical stripes of the
    full height, train = columns [0, 55 %), val = [55 %, 70 %), test = [70 %, 100 %) of the
    width, with the first ``AREA_GUARD_PX`` columns of val and test left out so that no
    patch (nor its LR receptive field) of one split touches another. Training cuts its
    patches inside the train windows only; ``training.evaluate_tiles`` scores inside the test
    windows only.
    """
    import rasterio

    with rasterio.open(path) as src:
        width, height = src.width, src.height
    areas: dict[str, list[tuple[int, int, int, int]]] = {}
    for split, lo, hi in AREA_FRACTIONS:
        col0 = round(lo * width) + (AREA_GUARD_PX if lo > 0 else 0)
        col1 = round(hi * width)
        areas[split] = [(col0, 0, col1, height)] if col1 > col0 else []
    return areas
