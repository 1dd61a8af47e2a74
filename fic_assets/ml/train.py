"""Fine-tune an ImageNet EfficientNet-Lite on the split's train images; early stopping on validation F1.

Tuned for 2 CPU cores: images decoded once into memory, channels_last, a smaller input than the native
size, early blocks frozen in the first epoch (less backward work, and the random head cannot wreck them).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import logging
import math
import random
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from fic_assets.ml import CLASSES, POSITIVE
from fic_assets.ml.data import MEAN, STD, ImageDataset, eval_transform, read_split, split_items, train_transform
from fic_assets.ml.model import build_model
from fic_assets.ml.params import DEFAULTS

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CARD_FILE = "card.json"


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def code_version() -> str:
    """The git revision of this checkout (with -dirty), else the installed package version."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=10"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return "fic " + importlib.metadata.version("fic")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def frozen_modules(model: torch.nn.Module, blocks: int) -> list[torch.nn.Module]:
    """The stem and the first `blocks` stages of a timm EfficientNet."""
    return [model.conv_stem, model.bn1, *list(model.blocks)[:blocks]]


def set_frozen(modules: list[torch.nn.Module], frozen: bool) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(not frozen)


def lr_lambda(total_steps: int, warmup_steps: int):
    """Linear warm-up, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


@torch.inference_mode()
def score_dataset(model: torch.nn.Module, dataset: ImageDataset, loss_fn,
                  batch_size: int = 32) -> tuple[float, np.ndarray]:
    """(mean loss, P(worn) per image) in eval mode."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    losses, scores = [], []
    for inputs, targets in loader:
        logits = model(inputs.contiguous(memory_format=torch.channels_last))
        losses.append(loss_fn(logits, targets).item() * len(targets))
        scores.append(torch.softmax(logits, dim=1)[:, CLASSES.index(POSITIVE)].numpy())
    if not scores:
        return float("nan"), np.zeros(0)
    return sum(losses) / len(dataset), np.concatenate(scores)


def train_epoch(model, loader, loss_fn, optimizer, scheduler, frozen: list[torch.nn.Module]) -> float:
    model.train()
    for module in frozen:  # frozen layers keep their ImageNet batch-norm statistics
        module.eval()
    total, seen = 0.0, 0
    for inputs, targets in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs.contiguous(memory_format=torch.channels_last)), targets)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(targets)
        seen += len(targets)
    return total / max(1, seen)


def class_weights(counts: list[int]) -> torch.Tensor:
    """Inverse-frequency weights (mean 1): the minority class counts as much as the majority."""
    n = sum(counts)
    return torch.tensor([n / (len(counts) * c) if c else 0.0 for c in counts], dtype=torch.float32)


def version_string(trained_at: datetime, params: dict, split_bytes: bytes, image_set_hash: str | None) -> str:
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode() + split_bytes + (image_set_hash or "").encode())
    return f"{trained_at:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:8]}"


def write_card(model_dir: str | Path, card: dict) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path


def read_card(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / CARD_FILE).read_text(encoding="utf-8"))


def train(split_file: str | Path, images_root: str | Path, params: dict, out_dir: str | Path,
          image_set_hash: str | None = None) -> dict:
    """Train on the split's train images, pick the best epoch on val, write model.pt + card.json; returns the card.

    params: the `train` section (missing keys take fic_assets.ml.params.DEFAULTS["train"]).
    """
    p = {**DEFAULTS["train"], **params}
    started = time.perf_counter()
    set_seeds(p["seed"])
    torch.set_num_threads(p["threads"])
    size = int(p["input_size"])
    split = read_split(split_file)
    train_set = ImageDataset(images_root, split_items(split, "train"), size,
                             train_transform(size, p["scale_min"], p["color_jitter"]))
    val_set = ImageDataset(images_root, split_items(split, "val"), size, eval_transform(size))
    if len(train_set) == 0 or 0 in train_set.class_counts():
        raise ValueError(f"need training images of both classes, have {dict(zip(CLASSES, train_set.class_counts()))}")

    model = build_model(p["arch"], num_classes=len(CLASSES), pretrained=p["pretrained"])
    model = model.to(memory_format=torch.channels_last)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(train_set.class_counts()),
                                        label_smoothing=p["label_smoothing"])
    val_loss_fn = torch.nn.CrossEntropyLoss()  # plain loss for model selection, comparable across runs
    head = list(model.get_classifier().parameters())
    head_ids = {id(t) for t in head}
    backbone = [t for t in model.parameters() if id(t) not in head_ids]
    optimizer = torch.optim.AdamW([{"params": backbone, "lr": p["lr"] * p["backbone_lr_scale"]},
                                   {"params": head, "lr": p["lr"]}], weight_decay=p["weight_decay"])
    # drop_last: a 1-image last batch would upset batch norm; kept when the set is smaller than a batch.
    loader = torch.utils.data.DataLoader(train_set, batch_size=p["batch_size"], shuffle=True,
                                         drop_last=len(train_set) > p["batch_size"],
                                         generator=torch.Generator().manual_seed(p["seed"]))
    total_steps = p["epochs"] * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, max(1, round(total_steps * p["warmup_fraction"]))))
    early = frozen_modules(model, p["freeze_blocks"])

    history: list[dict] = []
    best: tuple[float, float] | None = None  # (val F1, -val loss): higher is better
    best_state, best_epoch, stale = None, 0, 0
    for epoch in range(1, p["epochs"] + 1):
        epoch_start = time.perf_counter()
        frozen = early if epoch <= p["freeze_epochs"] else []
        set_frozen(early, bool(frozen))
        train_loss = train_epoch(model, loader, loss_fn, optimizer, scheduler, frozen)
        val_loss, val_scores = score_dataset(model, val_set, val_loss_fn)
        val_f1 = (float(f1_score(val_set.targets, (val_scores >= 0.5).astype(int), zero_division=0))
                  if len(val_set) else float("nan"))
        history.append({"epoch": epoch, "train_loss": round(train_loss, 5), "val_loss": round(val_loss, 5),
                        "val_f1": round(val_f1, 5), "seconds": round(time.perf_counter() - epoch_start, 2)})
        log.info("epoch %s: %s", epoch, history[-1])
        key = (val_f1, -val_loss) if len(val_set) else (0.0, -train_loss)
        if best is None or key > best:
            best, best_epoch, stale = key, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= p["patience"]:
                break
    model.load_state_dict(best_state)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out / MODEL_FILE)
    trained_at = datetime.now(timezone.utc)
    card = {
        "version": version_string(trained_at, p, Path(split_file).read_bytes(), image_set_hash),
        "arch": p["arch"],
        "classes": list(CLASSES),
        "positive_class": POSITIVE,
        "input_size": size,
        "resize": "squash",  # whole image resized to a square, no crop (see data.eval_transform)
        "mean": list(MEAN),
        "std": list(STD),
        "threshold": 0.5,
        "params": p,
        "metrics": {},
        "image_set_hash": image_set_hash,
        "code_version": code_version(),
        "trained_at": trained_at.isoformat(timespec="seconds"),
        "n_train": len(train_set),
        "n_val": len(val_set),
        "class_counts_train": dict(zip(CLASSES, train_set.class_counts())),
        "skipped_images": len(train_set.skipped) + len(val_set.skipped) + len(split.get("skipped", [])),
        "best_epoch": best_epoch,
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    write_card(out, card)
    return card
