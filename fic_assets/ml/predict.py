"""Load a trained model dir and score images: P(worn) per image; a bad image is reported, not fatal.

Decoding of the next batch runs on a helper thread while the model scores the current one (Pillow releases
the GIL while decoding), which keeps both cores busy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image

from fic_assets.imaging import BadImageError, to_rgb
from fic_assets.ml import NEGATIVE, POSITIVE
from fic_assets.ml.data import IMAGE_SUFFIXES, decode_file, describe, eval_transform
from fic_assets.ml.model import build_model
from fic_assets.ml.train import CARD_FILE, MODEL_FILE, read_card

ERROR_LABEL = "error"


class ModelNotFoundError(FileNotFoundError):
    pass


class PredictionRow(NamedTuple):
    path: str
    label: str  # "worn", "not_worn" or "error"
    score: float | None  # P(worn); None for an error
    error: str | None  # "reason: detail" for a bad image


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the image files under them (sorted)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def _decode(path: Path, size: int) -> Image.Image | str:
    """The image, or the reason it cannot be used."""
    try:
        return decode_file(path, size)
    except BadImageError as error:
        return describe(error)


def model_card(model_dir: str | Path) -> dict:
    """The card of a trained model dir; ModelNotFoundError (saying how to train one) when the dir holds none."""
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).is_file() or not (model_dir / CARD_FILE).is_file():
        raise ModelNotFoundError(
            f"no trained model in {model_dir} (needs {MODEL_FILE} and {CARD_FILE}); "
            f"train one with: fic train --data IMAGES_DIR --out {model_dir}")
    return read_card(model_dir)


@dataclass
class Predictor:
    model: torch.nn.Module
    card: dict
    transform: object

    @classmethod
    def load(cls, model_dir: str | Path, threads: int | None = None) -> Predictor:
        model_dir = Path(model_dir)
        card = model_card(model_dir)
        if threads:
            torch.set_num_threads(threads)
        model = build_model(card["arch"], num_classes=len(card["classes"]), pretrained=False)
        model.load_state_dict(torch.load(model_dir / MODEL_FILE, map_location="cpu", weights_only=True))
        model = model.eval().to(memory_format=torch.channels_last)
        return cls(model=model, card=card, transform=eval_transform(int(card["input_size"])))

    @property
    def size(self) -> int:
        return int(self.card["input_size"])

    def label(self, score: float) -> str:
        return POSITIVE if score >= float(self.card.get("threshold", 0.5)) else NEGATIVE

    @torch.inference_mode()
    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        """P(worn) for RGB images, one forward pass."""
        if not images:
            return []
        batch = torch.stack([self.transform(image) for image in images])
        logits = self.model(batch.contiguous(memory_format=torch.channels_last))
        return torch.softmax(logits, dim=1)[:, self.card["classes"].index(POSITIVE)].tolist()

    def predict_images(self, images: Sequence[Image.Image], batch_size: int = 16) -> list[tuple[str, float]]:
        """(label, P(worn)) per Pillow image, in order; any mode is converted like imaging.decode_rgb does."""
        rows = []
        for start in range(0, len(images), batch_size):
            scores = self.scores([to_rgb(image) for image in images[start:start + batch_size]])
            rows += [(self.label(score), score) for score in scores]
        return rows

    def _decoded_batches(self, paths: list[Path], batch_size: int) -> Iterator[list[Image.Image | str]]:
        batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(lambda b: [_decode(p, self.size) for p in b], batches[0]) if batches else None
            for index in range(len(batches)):
                decoded = pending.result()
                if index + 1 < len(batches):
                    pending = pool.submit(lambda b: [_decode(p, self.size) for p in b], batches[index + 1])
                yield decoded

    def predict_paths(self, paths: Sequence[str | Path], batch_size: int = 16) -> list[PredictionRow]:
        """One row per path, in order; unreadable or broken images get label "error" and the reason."""
        paths = [Path(p) for p in paths]
        rows: list[PredictionRow] = []
        offset = 0
        for decoded in self._decoded_batches(paths, batch_size):
            good = [item for item in decoded if not isinstance(item, str)]
            scores = iter(self.scores(good))
            for path, item in zip(paths[offset:offset + len(decoded)], decoded):
                if isinstance(item, str):
                    rows.append(PredictionRow(str(path), ERROR_LABEL, None, item))
                else:
                    score = next(scores)
                    rows.append(PredictionRow(str(path), self.label(score), score, None))
            offset += len(decoded)
        return rows
