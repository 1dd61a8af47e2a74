"""A labelled image folder drawn by the demo shop's generator, for tests, benchmarks and trying `fic train`.

Demo images are much easier than real shop photos: numbers measured on them say the code works and how
fast it is, not how good the model will be on the real shop.
"""

from __future__ import annotations

import random
from pathlib import Path

from fic_assets.demo.shop.catalogue import build_catalogue
from fic_assets.demo.shop.images import image_bytes


def write_demo_image_set(root: str | Path, n: int, seed: int = 42, width: int = 420) -> dict[str, int]:
    """n healthy images (about balanced worn / not_worn, all not-worn kinds mixed) as root/{worn,not_worn}/ID.jpg."""
    root = Path(root)
    images = [image for product in build_catalogue(seed).products for image in product.images if image.defect is None]
    random.Random(seed).shuffle(images)
    by_truth = {"worn": [i for i in images if i.truth == "worn"], "not_worn": [i for i in images if i.truth != "worn"]}
    counts = {"worn": (n + 1) // 2, "not_worn": n // 2}
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for image in by_truth[label][:count]:
            (root / label / f"{image.id}.jpg").write_bytes(image_bytes(image, width).body)
    return counts
