"""Score image URLs with a trained model, fast: shared cache -> download -> JPEG draft decode -> batched OpenVINO.

Worker threads take each URL from the image cache the image set uses (or download it into that cache) and
decode it straight to the model's input size; the main thread scores full batches meanwhile. Pillow, the
socket reads and OpenVINO all release the GIL, so downloads, decoding and inference overlap on the cores.
Only `window` images are in flight at a time, so memory stays flat however many URLs a brand has.

Every URL yields exactly one ImageScore: a score, or an error that says why (download, too large, truncated...).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import requests
from PIL import Image

from fic_assets.imageset.cache import ImageCache
from fic_assets.imageset.download import DownloadPolicy, fetch_one, make_session
from fic_assets.imaging import BadImageError, decode_rgb
from fic_assets.ml.predict import ERROR_LABEL
from fic_assets.ml.runtime import OpenVinoScorer

T = TypeVar("T")
R = TypeVar("R")


class ImageScore(NamedTuple):
    image_url: str
    label: str  # worn / not_worn, or "error"
    score: float | None  # P(worn); None for an error
    error: str | None  # "download: HTTP 404", "truncated: ...", ...


@dataclass(frozen=True)
class FetchOptions(DownloadPolicy):
    """The download policy (deadline, byte cap, per-host pacing from the settings) plus the worker threads."""

    workers: int = 8  # threads downloading and decoding; most of their time is spent waiting
    retries: int = 2
    timeout: float = 15.0


def ordered_map(fn: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor, window: int) -> Iterator[R]:
    """pool.map with at most `window` items in flight (pool.map would submit a whole brand at once)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def pixels_for(data: bytes, size: int) -> np.ndarray:
    """uint8 size x size x 3, resized like data.eval_transform (squash, bilinear) after a JPEG draft decode."""
    image = decode_rgb(data, draft_size=(size, size))
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def load_pixels(url: str, size: int, cache: ImageCache, session: requests.Session, options: FetchOptions,
                cancel: threading.Event | None = None) -> np.ndarray | str:
    """The image's pixels, or the reason there are none. Never raises for a bad image or a failed download."""
    data = cache.get(url)
    if data is None:
        try:
            fetched = fetch_one(session, url, options, cancel)
        except Exception as error:  # noqa: BLE001  fetch_one turns known failures into errors; an unknown one still must not stop a brand
            return f"download: {type(error).__name__}: {str(error)[:200]}"
        if fetched.data is None:
            return f"download: {fetched.error}"
        cache.put(url, fetched.data)  # whatever came back: judging it is the decoder's job, as for the image set
        data = fetched.data
    try:
        return pixels_for(data, size)
    except BadImageError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001  Pillow raises assorted types on malformed files; one image must not stop a brand
        return f"undecodable: {type(error).__name__}: {error}"


def iter_scores(urls: Iterable[str], scorer: OpenVinoScorer, cache: ImageCache, batch_size: int = 16,
                options: FetchOptions | None = None) -> Iterator[ImageScore]:
    """One ImageScore per URL (errors come as soon as they are known, scores a batch at a time).

    When the consumer stops (an exception in its thread, SIGTERM turned into one by Dagster, or close()), the
    downloads in flight are cancelled and the pool is not waited for: a stuck image host cannot hold the run.
    """
    options = options or FetchOptions()  # made per call: it reads the download settings
    session = make_session(options.workers)
    cancel = threading.Event()
    batch_urls: list[str] = []
    batch_pixels: list[np.ndarray] = []

    def flush() -> Iterator[ImageScore]:
        scores = scorer.scores(np.stack(batch_pixels))
        yield from (ImageScore(url, scorer.label(score), score, None) for url, score in zip(batch_urls, scores, strict=True))
        batch_urls.clear()
        batch_pixels.clear()

    urls = list(urls)
    pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="fic-infer")
    try:
        loaded = ordered_map(lambda url: load_pixels(url, scorer.size, cache, session, options, cancel), urls, pool,
                             window=max(4 * batch_size, 2 * options.workers))
        for url, pixels in zip(urls, loaded, strict=True):
            if isinstance(pixels, str):
                yield ImageScore(url, ERROR_LABEL, None, pixels)
                continue
            batch_urls.append(url)
            batch_pixels.append(pixels)
            if len(batch_urls) >= batch_size:
                yield from flush()
        if batch_urls:
            yield from flush()
    finally:
        cancel.set()  # finished, or the consumer stopped: downloads still in flight end within a fraction of a second
        pool.shutdown(wait=False, cancel_futures=True)
        session.close()


@dataclass
class UrlScores:
    scores: dict[str, float] = field(default_factory=dict)  # image URL -> P(worn)
    errors: dict[str, str] = field(default_factory=dict)  # image URL -> why it has no score


def score_urls(urls: Iterable[str], model_dir: str | Path, cache: ImageCache | None = None) -> UrlScores:
    """P(worn) for each distinct URL with the model in model_dir (used for Label Studio pre-annotations)."""
    scorer = OpenVinoScorer.load(model_dir)
    result = UrlScores()
    for row in iter_scores(dict.fromkeys(urls), scorer, cache or ImageCache.from_settings()):
        if row.error is None:
            result.scores[row.image_url] = row.score
        else:
            result.errors[row.image_url] = row.error
    return result
