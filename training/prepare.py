"""DVC stage `prepare`: HR images -> content-hash split -> packs + manifest with SHA-256s.

    python -m training.prepare [--params params.yaml] [--out artifacts/prepared]

``data.source`` is a folder of PNG/TIFF/COG images (UC Merced), or ``sample-scene``: chips
cut from the project's own Landsat 8 sample scene (built with ``cogs.sample_scene`` when
absent), which needs nothing outside the project.

``data.scenes`` adds georeferenced scenes (paths, or ``sample-scene``), split **by area**
(``training.data.scene_areas``): ``train_crop`` px chips with step ``scene_stride`` from
their train stripe go into the train pack, chips from the val stripe into the val pack; the
test stripe stays unseen for the tile-path evaluation. The test pack holds only
``data.source`` images (the UC Merced protocol). A listed scene that is absent is skipped
with a message; an absent ``data.source`` folder stops with one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from sr_engine.checkpoint import file_sha256
from training.data import (
    SPLITS,
    center_crop,
    encode_png,
    list_images,
    read_rgb,
    read_valid,
    scene_areas,
    scene_chips,
    sha256_bytes,
    split_of,
    window_chips,
    write_pack,
)

SCENE_FILE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"


def sample_scene_path(data_dir: Path) -> Path:
    """The sample scene's RGB uint8 COG, built first if missing."""
    scene = data_dir / SCENE_FILE
    if not scene.exists():
        from cogs.sample_scene import build_sample_scene

        build_sample_scene(data_dir, data_dir / ".cache")
    return scene


def collect(data: dict) -> list[tuple[str, bytes, np.ndarray | Path]]:
    """(name, bytes hashed for the split, (H, W, 3) uint8 image) for every source image."""
    if data["source"] == "sample-scene":
        scene = sample_scene_path(Path(data.get("scene_dir", "data")))
        chips = scene_chips(scene, int(data["chip_size"]), int(data["chip_count"]))
        return [(f"chip-{i:04d}", chip.tobytes(), chip) for i, chip in enumerate(chips)]
    folder = Path(data["source"])
    if not folder.is_dir():
        raise SystemExit(
            f"training data not found: data.source = {folder} is not a folder (UC Merced lives "
            "in ../shared/data/ucmerced); set data.source to another image folder or to "
            "'sample-scene' in params.yaml"
        )
    return [(str(p.relative_to(folder)), p.read_bytes(), p) for p in list_images(folder)]


def scene_file(entry: str, data: dict) -> Path:
    """A ``data.scenes`` entry as a file (``sample-scene``: built when absent)."""
    if entry == "sample-scene":
        return sample_scene_path(Path(data.get("scene_dir", "data")))
    return Path(entry)


def collect_scenes(data: dict) -> tuple[dict[str, list[tuple[str, np.ndarray]]], list[dict]]:
    """Chips of ``data.scenes`` per split (train, val) and the manifest's scene entries."""
    size, stride = int(data["train_crop"]), int(data.get("scene_stride", data["train_crop"]))
    chips: dict[str, list[tuple[str, np.ndarray]]] = {"train": [], "val": []}
    entries = []
    for entry in data.get("scenes") or []:
        path = scene_file(entry, data)
        if not path.is_file():
            print(f"scene {path} not found: skipped")
            continue
        rgb, valid, areas = read_rgb(path), read_valid(path), scene_areas(path)
        counts = {}
        for split in chips:
            found = [
                (f"{path.name}:{col},{row}", chip)
                for window in areas[split]
                for col, row, chip in window_chips(rgb, size, stride, window, valid)
            ]
            chips[split] += found
            counts[split] = len(found)
        entries.append(
            {"file": path.name, "sha256": file_sha256(path), "areas": areas, "chips": counts}
        )
    return chips, entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="artifacts/prepared")
    args = parser.parse_args()
    data = yaml.safe_load(Path(args.params).read_text())["data"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    entries: list[dict] = []
    packs: dict[str, tuple[list[bytes], list[str]]] = {s: ([], []) for s in SPLITS}
    for name, raw, image in collect(data):
        sha = sha256_bytes(raw)
        split = split_of(sha, float(data["val_fraction"]), float(data["test_fraction"]))
        img = read_rgb(image) if isinstance(image, Path) else image
        if split == "train":
            if min(img.shape[:2]) < int(data["train_crop"]):
                continue
            img = center_crop(img, int(data["train_crop"]))
        packs[split][0].append(encode_png(img))
        packs[split][1].append(name)
        entries.append({"file": name, "sha256": sha, "split": split, "shape": list(img.shape)})

    scene_chips_by_split, scenes = collect_scenes(data)
    for split, chips in scene_chips_by_split.items():
        for name, chip in chips:
            packs[split][0].append(encode_png(chip))
            packs[split][1].append(name)
    split_lines = sorted(f"{e['split']} {e['sha256']}" for e in entries)
    split_lines += sorted(f"scene {s['sha256']} {json.dumps(s['areas'])}" for s in scenes)
    manifest = {
        "source": data["source"],
        "files": entries,
        "scenes": scenes,
        "counts": {s: len(packs[s][1]) for s in SPLITS},
        "split_sha256": sha256_bytes("\n".join(split_lines).encode()),
        "packs": {},
    }
    for split, (images, names) in packs.items():
        path = out / f"{split}.npz"
        write_pack(path, images, names)
        manifest["packs"][split] = {"file": path.name, "sha256": file_sha256(path)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({"counts": manifest["counts"], "split_sha256": manifest["split_sha256"]}))


if __name__ == "__main__":
    main()
