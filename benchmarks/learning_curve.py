"""Test F1 against the number of labels: fine-tuned EfficientNet-Lite (lite0/1/2) vs the raw-pixel baseline.

One fixed test set; for each N the first N labelled images (balanced, in a fixed seeded order) are split
80/20 into train/val. Also seconds per training run, for quality per second between the architectures.
Demo-shop images are easy: the curve's shape and the relative costs matter, not the absolute F1.
Usage: python benchmarks/learning_curve.py [ARCH ...]   (default: all three)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from _record import record

from fic_assets.ml import CLASSES
from fic_assets.ml.baseline import train_baseline
from fic_assets.ml.data import make_split, write_split
from fic_assets.ml.evaluate import evaluate
from fic_assets.ml.model import ARCHS
from fic_assets.ml.params import DEFAULTS
from fic_assets.ml.sample import write_demo_image_set
from fic_assets.ml.train import train

SIZES = (25, 50, 100, 200)
TEST_IMAGES = 150


def subset_split(full: dict, n: int) -> dict:
    """The first n labelled (non-test) images, alternating classes, 80/20 train/val; the shared test set."""
    pool = {label: [row for row in full["splits"]["train"] + full["splits"]["val"] if row["label"] == label]
            for label in CLASSES}
    chosen = [pool[CLASSES[i % 2]][i // 2] for i in range(n)]
    val = [row for i, row in enumerate(chosen) if i % 5 == 4]
    train_rows = [row for i, row in enumerate(chosen) if i % 5 != 4]
    return {**full, "splits": {"train": train_rows, "val": val, "test": full["splits"]["test"]}}


def main() -> None:
    archs = sys.argv[1:] or sorted(ARCHS)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        total = 2 * max(SIZES) + TEST_IMAGES + 20
        write_demo_image_set(images, total, seed=11)
        full = make_split(images, val_fraction=0.0, test_fraction=TEST_IMAGES / total, seed=11)
        for n in SIZES:
            split_file = write_split(subset_split(full, n), Path(tmp) / f"split-{n}.json")
            results.setdefault("baseline", {})[n] = train_baseline(split_file, images, DEFAULTS["baseline"])["f1"]
            for arch in archs:
                out = Path(tmp) / f"{arch}-{n}"
                started = time.perf_counter()
                card = train(split_file, images, {**DEFAULTS["train"], "arch": arch}, out)
                seconds = time.perf_counter() - started
                f1 = evaluate(out, split_file, images, out)["f1"]
                results.setdefault(arch, {})[n] = {"f1": f1, "train_s": round(seconds, 1),
                                                   "epochs": len(card["history"])}
                print(arch, n, results[arch][n], flush=True)
    numbers = {"test_images": len(full["splits"]["test"]), "input_size": DEFAULTS["train"]["input_size"],
               "baseline_f1": results.pop("baseline")}
    for arch, curve in results.items():
        numbers[f"{arch}_f1"] = {n: r["f1"] for n, r in curve.items()}
        numbers[f"{arch}_train_s"] = {n: r["train_s"] for n, r in curve.items()}
    record("learning_curve", numbers)


if __name__ == "__main__":
    main()
