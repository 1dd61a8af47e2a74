"""Image listing, the stratified train/val/test split file, transforms and the training Dataset.

The split is a JSON file of relative paths and labels so DVC versions it next to the image set, and the
same images stay in the test set as the set grows: within each class, images are ordered by a seeded hash
of their path (not by a shuffle of the current list), so adding images moves few old ones between splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import timm.data
import torch
from PIL import Image
from torchvision.transforms import Compose

from fic_assets.imaging import BadImageError, decode_rgb
from fic_assets.ml import CLASSES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
# timm's numbers for the TF-ported EfficientNet-Lite weights ((x - 127.5) / 127.5).
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

Item = tuple[str, str]  # (path relative to the images root, label)


def list_images(root: str | Path) -> list[Item]:
    """Every image file under root/worn and root/not_worn, sorted; other folders and files are ignored."""
    root = Path(root)
    items = []
    for label in CLASSES:
        folder = root / label
        if folder.is_dir():
            items += [(p.relative_to(root).as_posix(), label) for p in sorted(folder.rglob("*"))
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return items


def decode_file(path: str | Path, draft: int | None = None) -> Image.Image:
    """imaging.decode_rgb on a file; every failure is a BadImageError.

    Pillow can raise OSError("Truncated File Read") from Image.draft, before decode_rgb's own check, so a
    cut-off file is mapped to "truncated" here too; a file that cannot be read is "unreadable".
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BadImageError("unreadable", error.strerror or str(error)) from error
    try:
        return decode_rgb(data, draft_size=None if draft is None else (draft, draft))
    except BadImageError:
        raise
    except OSError as error:
        raise BadImageError("truncated" if "truncat" in str(error).lower() else "undecodable", str(error)) from error


def describe(error: BadImageError) -> str:
    return f"{error.reason}: {error.detail}"


def check_image(path: Path, draft: int = 64) -> str | None:
    """None when the image decodes, else the reason; a small draft keeps the check fast."""
    try:
        decode_file(path, draft)
    except BadImageError as error:
        return describe(error)
    return None


def _rank(seed: int, path: str) -> str:
    return hashlib.sha1(f"{seed}:{path}".encode()).hexdigest()


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_val, n_test) for one class; at least one each while the class has three or more images."""
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    if n >= 3:
        n_test, n_val = max(1, n_test), max(1, n_val)
    return n_val, n_test


def make_split(root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 42) -> dict:
    """The split document: {seed, fractions, classes, counts, skipped: [{path, reason}],
    splits: {train|val|test: [{path, label}]}} with paths relative to root."""
    root = Path(root)
    if not any((root / label).is_dir() for label in CLASSES):
        raise FileNotFoundError(f"no {'/'.join(CLASSES)} folders under {root}")
    good: dict[str, list[str]] = {label: [] for label in CLASSES}
    skipped = []
    for path, label in list_images(root):
        reason = check_image(root / path)
        if reason is None:
            good[label].append(path)
        else:
            log.warning("skipping bad image %s (%s)", path, reason)
            skipped.append({"path": path, "reason": reason})
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for label, paths in good.items():
        ranked = sorted(paths, key=lambda p: _rank(seed, p))
        n_val, n_test = split_counts(len(ranked), val_fraction, test_fraction)
        parts = {"test": ranked[:n_test], "val": ranked[n_test:n_test + n_val], "train": ranked[n_test + n_val:]}
        for name, chosen in parts.items():
            splits[name] += [{"path": p, "label": label} for p in chosen]
    for name in SPLITS:
        splits[name].sort(key=lambda row: row["path"])
    counts = {name: {label: sum(r["label"] == label for r in rows) for label in CLASSES}
              for name, rows in splits.items()}
    return {"seed": seed, "fractions": {"val": val_fraction, "test": test_fraction}, "classes": list(CLASSES),
            "counts": counts, "skipped": skipped, "splits": splits}


def write_split(split: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split, indent=1) + "\n", encoding="utf-8")
    return path


def read_split(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def split_items(split: dict, *names: str) -> list[Item]:
    return [(row["path"], row["label"]) for name in names for row in split["splits"][name]]


class ToNormalizedTensor:
    """PIL RGB -> normalised CHW float tensor, in numpy.

    Replaces ToTensor + Normalize: with 2 torch threads those small per-image ops cost ~4.5 ms an image
    (thread hand-off overhead), numpy does it in ~0.15 ms.
    """

    def __init__(self, mean: Sequence[float] = MEAN, std: Sequence[float] = STD):
        self.offset = np.asarray(mean, dtype=np.float32) * 255
        self.scale = 1 / (np.asarray(std, dtype=np.float32) * 255)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = (np.asarray(image, dtype=np.float32) - self.offset) * self.scale
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={(self.offset / 255).tolist()}, std={(1 / self.scale / 255).tolist()})"


def train_transform(size: int, scale_min: float = 0.5, color_jitter: float = 0.2) -> Compose:
    """Mild augmentation: shop photos are upright and centred, so no vertical flip and no heavy crops."""
    geometry, colour, _ = timm.data.create_transform(
        size, is_training=True, scale=(scale_min, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, vflip=0.0,
        color_jitter=color_jitter, interpolation="bilinear", separate=True)
    return Compose([*geometry.transforms, *colour.transforms, ToNormalizedTensor()])


def eval_transform(size: int) -> Compose:
    """Squash the whole image to a square: a centre crop of a portrait photo would cut off heads and feet."""
    resize = timm.data.create_transform(size, is_training=False, crop_pct=1.0, crop_mode="squash",
                                        interpolation="bilinear", normalize=False)
    pil_steps = [step for step in resize.transforms if "ToTensor" not in type(step).__name__]
    return Compose([*pil_steps, ToNormalizedTensor()])


def load_image(path: str | Path, size: int) -> Image.Image:
    """Decode with a JPEG draft near the input size, then cap the kept size (memory, augmentation speed)."""
    image = decode_file(path, size)
    cap = round(size * 1.5)
    if min(image.size) > cap:
        scale = cap / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    return image


class ImageDataset(torch.utils.data.Dataset):
    """Labelled images decoded once into memory (a few hundred small images; epochs then cost no decoding).

    Images that fail to decode are skipped with a warning and counted in `skipped`.
    """

    def __init__(self, root: str | Path, items: Sequence[Item], size: int, transform=None):
        self.transform = transform or eval_transform(size)
        self.images: list[Image.Image] = []
        self.targets: list[int] = []
        self.paths: list[str] = []
        self.skipped: list[dict] = []
        for path, label in items:
            try:
                image = load_image(Path(root) / path, size)
            except BadImageError as error:
                log.warning("skipping bad image %s (%s)", path, describe(error))
                self.skipped.append({"path": path, "reason": describe(error)})
                continue
            self.images.append(image)
            self.targets.append(CLASSES.index(label))
            self.paths.append(path)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), self.targets[index]

    def class_counts(self) -> list[int]:
        return [self.targets.count(i) for i in range(len(CLASSES))]
