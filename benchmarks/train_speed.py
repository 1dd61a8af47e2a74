"""Training time for 500 labelled images on this machine (target: <= 5 min on 2 cores), default params.

Demo-shop images (fic_assets.demo_shop generator), so the time is representative; the F1 is not (easy images).
Usage: python benchmarks/train_speed.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from _record import record

from fic_assets.ml.data import make_split, write_split
from fic_assets.ml.evaluate import evaluate
from fic_assets.ml.params import DEFAULTS
from fic_assets.ml.predict import Predictor, expand_paths
from fic_assets.ml.sample import write_demo_image_set
from fic_assets.ml.train import train


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as tmp:
        images, out = Path(tmp) / "images", Path(tmp) / "model"
        write_demo_image_set(images, n, seed=42)
        started = time.perf_counter()
        split_file = write_split(make_split(images, **DEFAULTS["prepare"]), Path(tmp) / "split.json")
        prepared = time.perf_counter()
        card = train(split_file, images, DEFAULTS["train"], out)
        trained = time.perf_counter()
        metrics = evaluate(out, split_file, images, out)
        evaluated = time.perf_counter()
        predictor = Predictor.load(out)
        paths = expand_paths([images])
        predictor.predict_paths(paths[:16])  # warm-up
        start = time.perf_counter()
        predictor.predict_paths(paths)
        predict_rate = len(paths) / (time.perf_counter() - start)
    record("train_speed", {
        "images": n,
        "arch": card["arch"],
        "input_size": card["input_size"],
        "epochs_run": len(card["history"]),
        "best_epoch": card["best_epoch"],
        "prepare_s": round(prepared - started, 1),
        "train_s": round(trained - prepared, 1),
        "evaluate_s": round(evaluated - trained, 1),
        "total_s": round(evaluated - started, 1),
        "seconds_per_epoch": [h["seconds"] for h in card["history"]],
        "test_f1_demo_images": metrics["f1"],
        "predict_images_per_s": round(predict_rate, 1),
    })


if __name__ == "__main__":
    main()
