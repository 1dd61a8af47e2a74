"""The labelled image folder and its cross-validation folds.

A labelled folder holds worn/* and not_worn/*. With the few hundred labels a labelling round gives, a fixed
30% test split is both wasteful (the final model should learn from every label) and noisy (30 test images give
an F1 that moves by 0.05 between splits), so the platform cross-validates instead: `make_folds` assigns every
usable image to one of k folds, stratified by class; identical files (the same photo under two URLs) share a
fold, so a duplicate never scores its own twin. The folds document is a JSON file DVC versions next to the set.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from PIL import Image

from fic_assets.platform.imaging import BadImageError, decode_rgb
from fic_assets.defs.model.classes import CLASSES
from fic_assets.defs.model.scoring import read_file

log = logging.getLogger(__name__)

# Whatever Pillow can open (AVIF and WebP included), by file name; the decoder judges the content.
IMAGE_SUFFIXES = frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                           if fmt in Image.OPEN) | {".jpg", ".jpeg", ".png", ".webp"}

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


def describe(error: BadImageError) -> str:
    return f"{error.reason}: {error.detail}"


def check_bytes(data: bytes, draft: int = 64) -> str | None:
    """None when the image decodes, else the reason; a small draft keeps the check fast."""
    try:
        decode_rgb(data, draft_size=(draft, draft))
    except BadImageError as error:
        return describe(error)
    except OSError as error:  # Image.draft can raise "Truncated File Read" before decode_rgb's own check
        return f"{'truncated' if 'truncat' in str(error).lower() else 'undecodable'}: {error}"
    return None


def _rank(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def assign_folds(items: list[dict], k: int, seed: int) -> list[dict]:
    """Each item gets `fold`: per class, groups of identical files in a seeded order, dealt round-robin."""
    out = []
    for label in CLASSES:
        groups: dict[str, list[dict]] = {}
        for item in items:
            if item["label"] == label:
                groups.setdefault(item["digest"], []).append(item)
        for rank, digest in enumerate(sorted(groups, key=lambda d: _rank(seed, d))):
            out += [{**item, "fold": rank % k} for item in groups[digest]]
    return sorted(out, key=lambda item: item["path"])


def make_folds(root: str | Path, folds: int = 5, seed: int = 42) -> dict:
    """The folds document: {seed, folds, classes, counts, skipped: [{path, reason}], items: [{path, label, digest,
    fold}]} with paths relative to root. Fewer folds than asked when a class has fewer distinct images."""
    root = Path(root)
    if not any((root / label).is_dir() for label in CLASSES):
        raise FileNotFoundError(f"no {'/'.join(CLASSES)} folders under {root}")
    good, skipped = [], []
    for path, label in list_images(root):
        try:
            data = read_file(root / path)
            reason = check_bytes(data)
        except BadImageError as error:
            reason = describe(error)
        if reason is None:
            good.append({"path": path, "label": label, "digest": hashlib.sha256(data).hexdigest()[:20]})
        else:
            log.warning("skipping bad image %s (%s)", path, reason)
            skipped.append({"path": path, "reason": reason})
    distinct = {label: len({i["digest"] for i in good if i["label"] == label}) for label in CLASSES}
    if min(distinct.values()) < 2:
        raise ValueError(f"need at least 2 distinct usable images of each class {CLASSES}, have {distinct}")
    k = max(2, min(folds, *distinct.values()))
    items = assign_folds(good, k, seed)
    return {"seed": seed, "folds": k, "classes": list(CLASSES),
            "counts": {label: sum(i["label"] == label for i in items) for label in CLASSES},
            "skipped": skipped, "items": items}


def write_folds(folds: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(folds, indent=1) + "\n", encoding="utf-8")
    return path


def read_folds(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
