"""Prediction speed end to end (read from the image cache, decode, predict, write to DuckDB), beside a naive loop.

Target (issue 6): >= 100 images/s end to end on 2 cores and >= 4x the naive loop, measured in the same run.

- fast: what `brand_predictions` runs (fic_assets.predictions.predict_brands): worker threads read the shared image
  cache and decode with a JPEG draft straight to the input size, OpenVINO scores batches of 16, and the
  rows are upserted into DuckDB `predictions` + `images.flag_model` in chunks.
- naive: the original script's way: open each image with Pillow, timm's eval transform, one eager PyTorch
  forward per image, then the same DuckDB write.
- bf16 / smaller input: the fast path in OpenVINO's bf16 precision, and with the same weights at a smaller input
  size, each with the F1 it costs on held-out images (demo images are easy, so F1 differences here understate
  what real photos would show).

A model is trained first (default params, fewer epochs) on demo images so the F1 numbers mean something;
the images scored are other demo images, served from the cache like a warm re-prediction after a retrain.
Usage: python benchmarks/inference.py [IMAGES] [NAIVE_IMAGES]
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import timm
import torch
from _record import record
from PIL import Image
from sklearn.metrics import f1_score

from fic_assets import storage
from fic_assets.demo_shop.catalogue import build_catalogue, image_url
from fic_assets.demo_shop.images import image_bytes
from fic_assets.imageset.cache import ImageCache
from fic_assets.ml import data as ml_data
from fic_assets.ml.params import DEFAULTS
from fic_assets.ml.predict import Predictor
from fic_assets.ml.sample import write_demo_image_set
from fic_assets.ml.train import CARD_FILE, train
from fic_assets.ml.runtime import OpenVinoScorer
from fic_assets.predictions import PREDICTION_COLUMNS, predict_brands, write_predictions

SHOP = "http://demo-shop.invalid"  # never contacted: every image is in the cache
TRAIN_IMAGES = 300
SERVED_WIDTH = 420  # what the demo shop serves; real shop images are bigger, where the JPEG draft gains more


def train_model(root: Path) -> Path:
    images = root / "train"
    write_demo_image_set(images, TRAIN_IMAGES, seed=42)
    split = ml_data.write_split(ml_data.make_split(images, **DEFAULTS["prepare"]), root / "split.json")
    train(split, images, {**DEFAULTS["train"], "epochs": 3}, root / "model")
    return root / "model"


def scoring_set(root: Path, n: int, exclude: set[str]) -> tuple[Path, ImageCache, dict[str, str], list[str]]:
    """A DuckDB with n healthy demo images (not used in training) across the demo brands, all in the cache."""
    cache = ImageCache(root / "cache")
    truth: dict[str, str] = {}
    items = []
    for product in build_catalogue(42).products:
        urls = []
        for image in product.images:
            if image.defect is None and image.id not in exclude and len(truth) < n:
                url = image_url(SHOP, image)
                cache.put(url, image_bytes(image, SERVED_WIDTH).body)
                truth[url] = image.truth
                urls.append({"url": url, "position": image.position, "is_packshot": image.is_packshot})
        if urls:
            items.append({"item_id": product.item_id, "sku": product.sku, "name": product.name, "brand": product.brand.name,
                          "brand_slug": product.brand.path, "price": product.price, "currency": "EUR",
                          "colour": product.colour, "url": f"{SHOP}{product.path}", "images": urls})
    db = root / "bench.duckdb"
    with storage.connect(db) as con:
        storage.upsert_items(con, items)
        slugs = [row[0] for row in con.execute("SELECT DISTINCT brand_slug FROM pieces ORDER BY 1").fetchall()]
    return db, cache, truth, slugs


def fast(db: Path, slugs: list[str], model_dir: Path, cache: ImageCache, precision: str = "f32") -> tuple[float, dict[str, str]]:
    """images/s of predict_brands from a clean predictions table (model compile time included), and the labels."""
    with storage.connect(db) as con:
        con.execute("DELETE FROM predictions")
    started = time.perf_counter()
    scorer = OpenVinoScorer.load(model_dir, precision=precision)
    run = predict_brands(lambda: storage.connect(db), slugs, model_dir, cache, scorer=scorer)
    rate = run.predicted / (time.perf_counter() - started)
    with storage.connect(db, read_only=True) as con:
        labels = dict(con.execute("SELECT image_url, label FROM predictions").fetchall())
    return rate, labels


def naive(db: Path, model_dir: Path, cache: ImageCache, urls: list[str]) -> float:
    """Open, timm transform, one forward per image, then the same DuckDB write."""
    started = time.perf_counter()
    predictor = Predictor.load(model_dir, threads=2)
    config = timm.data.resolve_data_config({"input_size": (3, predictor.size, predictor.size)}, model=predictor.model)
    transform = timm.data.create_transform(**config)
    model = predictor.model.to(memory_format=torch.contiguous_format)
    rows = []
    with torch.no_grad():
        for url in urls:
            image = Image.open(io.BytesIO(cache.get(url))).convert("RGB")
            score = float(torch.softmax(model(transform(image).unsqueeze(0)), dim=1)[0, 1])
            rows.append((url, "x", "x", predictor.label(score), score, None, "naive", storage.utcnow()))
    with storage.connect(db) as con:
        write_predictions(con, pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS)))
    return len(urls) / (time.perf_counter() - started)


def at_input_size(model_dir: Path, size: int, target: Path) -> Path:
    """The same weights run at another input size (EfficientNet pools globally, so any size works)."""
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("model.onnx*"))
    card = json.loads((target / CARD_FILE).read_text())
    (target / CARD_FILE).write_text(json.dumps({**card, "input_size": size, "version": f"{card['version']}-{size}px"}))
    return target


def f1(labels: dict[str, str], truth: dict[str, str]) -> float:
    urls = sorted(truth)
    return float(f1_score([truth[u] == "worn" for u in urls], [labels.get(u) == "worn" for u in urls]))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    n_naive = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = train_model(root)
        trained_on = {path.stem for path in (root / "train").rglob("*.jpg")}
        db, cache, truth, slugs = scoring_set(root, n, trained_on)
        size = int(json.loads((model_dir / CARD_FILE).read_text())["input_size"])
        fast(db, slugs, model_dir, cache)  # warm-up: exports model.onnx once, warms the page cache
        fast_rate, fast_labels = fast(db, slugs, model_dir, cache)
        naive_rate = naive(db, model_dir, cache, sorted(truth)[:n_naive])
        bf16_rate, bf16_labels = fast(db, slugs, model_dir, cache, precision="bf16")
        small = at_input_size(model_dir, 160, root / "model-160")
        fast(db, slugs, small, cache)
        small_rate, small_labels = fast(db, slugs, small, cache)
    record("inference", {
        "images": len(truth),
        "naive_images": min(n_naive, len(truth)),
        "image_px": f"{SERVED_WIDTH}x{SERVED_WIDTH * 4 // 3}",
        "input_size": size,
        "fast_images_per_s": round(fast_rate, 1),
        "naive_images_per_s": round(naive_rate, 1),
        "speedup": round(fast_rate / naive_rate, 2),
        "fast_f1": round(f1(fast_labels, truth), 4),
        "bf16_images_per_s": round(bf16_rate, 1),
        "bf16_f1": round(f1(bf16_labels, truth), 4),
        "input_160_images_per_s": round(small_rate, 1),
        "input_160_f1": round(f1(small_labels, truth), 4),
        "threads": torch.get_num_threads(),
    })


if __name__ == "__main__":
    main()
