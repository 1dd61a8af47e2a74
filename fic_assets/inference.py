"""Score image URLs with a trained model: shared image cache -> decode (JPEG draft) -> batched predictor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fic_assets.imageset.cache import ImageCache
from fic_assets.imageset.download import fetch_many
from fic_assets.imaging import BadImageError, decode_rgb
from fic_assets.ml.predict import Predictor


@dataclass
class UrlScores:
    scores: dict[str, float] = field(default_factory=dict)  # image URL -> P(worn)
    errors: dict[str, str] = field(default_factory=dict)  # image URL -> why it has no score


def score_urls(urls: Sequence[str], model_dir: str | Path, cache: ImageCache | None = None, batch_size: int = 16) -> UrlScores:
    predictor = Predictor.load(model_dir)
    cache = cache or ImageCache.from_settings()
    result = UrlScores()
    fetched = fetch_many(urls, cache)
    readable: list[tuple[str, object]] = []
    for url, outcome in fetched.items():
        if not outcome.ok:
            result.errors[url] = outcome.error or "download failed"
            continue
        try:
            readable.append((url, decode_rgb(outcome.data, draft_size=(predictor.size, predictor.size))))
        except BadImageError as error:
            result.errors[url] = str(error)
    predictions = predictor.predict_images([image for _, image in readable], batch_size=batch_size)
    result.scores = {url: score for (url, _), (_, score) in zip(readable, predictions, strict=True)}
    return result
