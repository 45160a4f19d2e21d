"""Rebuild `datasets/embedded/` (the offline default dataset) from images shipped in installed packages.

Every source is a file inside the scikit-image or scikit-learn wheel; nothing is downloaded. Output: one
RGB PNG per source photograph (grey sources replicated to 3 channels, the longer side downscaled to at
most MAX_SIDE with Lanczos), the 100 LFW faces of `lfw_subset.npy` as 25 x 25 PNGs, and `index.json`
listing every file with its class, label, source package, path in that package, licence and the SHA-256
of its decoded pixels. Labels are class names in sorted order. The same package versions give the same
files; the pixel hashes let a test check them whatever the PNG encoder.

Example:
    python datasets/build_embedded.py            # writes datasets/embedded/
    python datasets/build_embedded.py --out /tmp/embedded
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MAX_SIDE = 512
FACE_CLASS = "face"
FACE_COUNT = 100  # lfw_subset.npy holds 100 faces, then 100 non-face background patches
OUT = Path(__file__).resolve().parent / "embedded"

PACKAGE_DIST = {"skimage": "scikit-image", "sklearn": "scikit-learn"}


@dataclass(frozen=True)
class Source:
    name: str  # class name
    package: str  # import name
    path: str  # inside the package
    licence: str
    origin: str


CC0 = "CC0 1.0"
PD = "public domain"
SOURCES = [
    Source("astronaut", "skimage", "data/astronaut.png", PD, "Eileen Collins, NASA Great Images database"),
    Source("brick", "skimage", "data/brick.png", CC0, "CC0Textures 'Bricks25', perspective-corrected by scikit-image"),
    Source("camera", "skimage", "data/camera.png", CC0, "photograph by Lav Varshney"),
    Source("cell", "skimage", "data/cell.png", CC0, "quantitative phase image of a cell (Mueller et al. 2018)"),
    Source("chelsea", "skimage", "data/chelsea.png", CC0, "Chelsea the cat, photograph by Stefan van der Walt"),
    Source("clock", "skimage", "data/clock_motion.png", PD, "motion-blurred wall clock, by Stefan van der Walt"),
    Source(
        "coffee", "skimage", "data/coffee.png", CC0,
        "coffee cup, photograph by Rachel Michetti (Pikolo Espresso Bar)",
    ),
    Source(
        "coins", "skimage", "data/coins.png", "no known copyright restrictions",
        "Greek coins from Pompeii, Brooklyn Museum",
    ),
    Source("grass", "skimage", "data/grass.png", CC0, "DeviantArt 'Grass-01' by linolafett"),
    Source("gravel", "skimage", "data/gravel.png", CC0, "CC0Textures 'Gravel04'"),
    Source(
        "horse", "skimage", "data/horse.png", CC0,
        "horse silhouette (clip art, not a photograph), openclipart, Andreas Preuss",
    ),
    Source("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg", PD, "Hubble eXtreme Deep Field, NASA"),
    Source(
        "immunohistochemistry", "skimage", "data/ihc.png", "no known copyright restrictions",
        "IHC-stained colonic glands, CMMI",
    ),
    Source(
        "microaneurysms", "skimage", "data/microaneurysms.png", CC0,
        "fundus detail, HRF database image 07_dr (Andreas Maier)",
    ),
    Source("moon", "skimage", "data/moon.png", "not stated by scikit-image", "surface of the moon"),
    Source(
        "motorcycle", "skimage", "data/motorcycle_left.png", "not stated by scikit-image",
        "Middlebury 2014 stereo, left view",
    ),
    Source("page", "skimage", "data/page.png", "not stated by scikit-image", "scanned page of printed text"),
    Source(
        "retina", "skimage", "data/retina.jpg", CC0,
        "fundus photograph of a normal left eye, Mikael Haggstrom, Wikimedia",
    ),
    Source("rocket", "skimage", "data/rocket.jpg", PD, "Falcon 9 launch with DSCOVR, SpaceX"),
    Source("text", "skimage", "data/text.png", PD, "Wikipedia 'Corner.png'"),
    Source("china", "sklearn", "datasets/images/china.jpg", "CC BY 2.0", "Flickr, danielbuechele"),
    Source("flower", "sklearn", "datasets/images/flower.jpg", "CC BY 2.0", "Flickr, vultilion"),
]
FACES = Source(
    FACE_CLASS, "skimage", "data/lfw_subset.npy", "not stated (LFW)", "Labeled Faces in the Wild, 25 x 25 crops"
)


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package} is not installed; pip install {PACKAGE_DIST[package]}")
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(package: str) -> str:
    return importlib.metadata.version(PACKAGE_DIST[package])


def pixel_sha256(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode in ("RGBA", "LA", "PA"):
            # transparent pixels become white, as the image looks on a page
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image.convert("RGBA"))
        return np.asarray(image.convert("RGB"))


def downscale(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    if max(height, width) <= MAX_SIDE:
        return pixels
    factor = MAX_SIDE / max(height, width)
    new = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(pixels).resize(new, Image.Resampling.LANCZOS))


def save_png(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG", optimize=True)


def item(file: str, source: Source, label: int, pixels: np.ndarray, original: tuple[int, ...], **extra) -> dict:
    return {
        "file": file,
        "class": source.name,
        "label": label,
        "package": f"{PACKAGE_DIST[source.package]} {package_version(source.package)}",
        "source": f"{source.package}/{source.path}",
        "licence": source.licence,
        "origin": source.origin,
        "original_size": list(original),
        "size": [int(pixels.shape[0]), int(pixels.shape[1])],
        "pixels_sha256": pixel_sha256(pixels),
        **extra,
    }


def build(out: Path) -> dict:
    """Write every image and index.json into `out` (replacing it) and return the index."""
    classes = sorted([s.name for s in SOURCES] + [FACE_CLASS])
    label_of = {name: label for label, name in enumerate(classes)}
    staging = out.with_name(out.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    items = []
    for source in SOURCES:
        original = load_rgb(package_dir(source.package) / source.path)
        pixels = downscale(original)
        file = f"{source.name}.png"
        save_png(pixels, staging / file)
        items.append(item(file, source, label_of[source.name], pixels, original.shape[:2]))

    # allow_pickle=False: the array is plain uint8, and nothing from a package should run code on load
    faces = np.load(package_dir(FACES.package) / FACES.path, allow_pickle=False)[:FACE_COUNT]
    for number, face in enumerate(faces):
        # stored as float64 in [0, 1]; quantised to 8 bits like every other image
        grey = np.round(np.clip(face, 0.0, 1.0) * 255.0).astype(np.uint8)
        pixels = np.repeat(grey[:, :, None], 3, axis=2)
        file = f"faces/face_{number:03d}.png"
        save_png(pixels, staging / file)
        items.append(item(file, FACES, label_of[FACE_CLASS], pixels, face.shape, lfw_index=number))

    items.sort(key=lambda entry: (entry["label"], entry["file"]))
    index = {
        "name": "embedded",
        "schema": 1,
        "description": "real images shipped inside scikit-image and scikit-learn; one class per source "
        "photograph, plus one class 'face' of 100 LFW faces",
        "max_side": MAX_SIDE,
        "classes": classes,
        "items": items,
    }
    (staging / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args()
    index = build(args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(index['items'])} images, {len(index['classes'])} classes, {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
