"""The one scoring path: image files or URLs in, a score or a reason per image out.

Everything that scores images goes through here: `fic predict`, the model's cross-validation and the
`model_quality` check, Label Studio pre-annotations and `brand_predictions`. So the F1 the check reports is the
F1 users get: the same decoder, the same runtime, the same precision, the same threshold.

- `model_pixels` is the one decode-and-resize function (training uses it too): JPEG draft decode straight to
  about the input size, EXIF orientation applied, the whole image squashed to a square (a centre crop of a
  portrait photo would cut off heads and feet), uint8.
- `Scorer` runs the model dir's exported graph compiled by OpenVINO (~3x eager PyTorch on 2 cores);
  `FeatureExtractor` runs the ImageNet backbone the same way for training.
- `pixel_stream` / `score_stream`: worker threads read each source (a file, or a URL through the shared image
  cache and the polite downloader) and decode it while the main thread scores full batches. Pillow, socket
  reads and OpenVINO release the GIL, so the cores overlap. At most `window` images are in flight, so memory
  stays flat however many images a brand has; when the consumer stops (an error, an interrupted run), the
  in-flight downloads are told to stop and nothing waits for them.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from fic_assets.platform import settings
from fic_assets.defs.dataset.download import DownloadPolicy
from fic_assets.platform.imaging import BadImageError, decode_rgb
from fic_assets.defs.model.classes import NEGATIVE, POSITIVE
from fic_assets.defs.model.artifact import export_backbone, export_onnx, model_card

log = logging.getLogger(__name__)

ERROR_LABEL = "error"
PRECISIONS = ("f32", "bf16")
# A local file larger than this is not a shop photo (they are 0.05-3 MB); refused before reading it.
MAX_FILE_BYTES = 64 * 1024 * 1024


def model_pixels(data: bytes, size: int) -> np.ndarray:
    """uint8 size x size x 3: decode (draft-scaled for JPEG, EXIF-rotated, RGB), then squash to the square.

    reducing_gap lets Pillow shrink a big PNG by an integer factor first (PNG has no draft mode), which keeps
    decoding real 1000 px photos cheap; the result differs from a plain bilinear resize by a grey level or two.
    """
    image = decode_rgb(data, draft_size=(size, size))
    return np.asarray(image.resize((size, size), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)


# --- the runtime ------------------------------------------------------------------------------------------


def default_threads() -> int:
    """FIC_INFERENCE_THREADS, else 0: OpenVINO then uses every core."""
    return int(settings.get("FIC_INFERENCE_THREADS") or 0)


def requested_precision(precision: str | None = None) -> str:
    precision = precision or settings.get("FIC_INFERENCE_PRECISION")
    if precision not in PRECISIONS:
        raise ValueError(f"FIC_INFERENCE_PRECISION must be one of {PRECISIONS}, not {precision!r}")
    return precision


def compile_graph(onnx_path: Path, precision: str, threads: int | None = None):
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    threads = default_threads() if threads is None else threads
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    return core.compile_model(core.read_model(str(onnx_path)), "CPU", config)


def usable_precision(card: dict, requested: str) -> str:
    """The precision to score with: a reduced one only when the model's own check evaluated that precision."""
    evaluated = card.get("evaluated_precision", "f32")
    if requested != "f32" and requested != evaluated:
        log.warning("model %s was evaluated in %s, not %s: scoring in f32 so its checked F1 holds",
                    card.get("version"), evaluated, requested)
        return "f32"
    return requested


@dataclass
class Scorer:
    """Scores uint8 batches (N x size x size x 3) with a model dir's exported graph, compiled by OpenVINO."""

    compiled: object
    card: dict
    positive_index: int
    precision: str

    @classmethod
    def load(cls, model_dir: str | Path, threads: int | None = None, precision: str | None = None) -> Scorer:
        card = model_card(model_dir)  # a dir without a model fails here, saying how to train one
        chosen = usable_precision(card, requested_precision(precision))
        compiled = compile_graph(export_onnx(model_dir), chosen, threads)
        return cls(compiled=compiled, card=card, positive_index=list(card["classes"]).index(POSITIVE), precision=chosen)

    @property
    def size(self) -> int:
        return int(self.card["input_size"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def threshold(self) -> float:
        return float(self.card.get("threshold", 0.5))

    def label(self, score: float) -> str:
        return POSITIVE if score >= self.threshold else NEGATIVE

    def _positive(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(np.ascontiguousarray(pixels, dtype=np.uint8))[0])[:, self.positive_index]

    def scores(self, pixels: np.ndarray) -> list[float]:
        """P(worn) per image of the batch (averaged with the mirror image when the card asks for it)."""
        if len(pixels) == 0:
            return []
        scores = self._positive(pixels)
        if self.card.get("tta_hflip"):
            scores = (scores + self._positive(pixels[:, :, ::-1])) / 2
        return scores.astype(float).tolist()


@dataclass
class FeatureExtractor:
    """The ImageNet backbone's L2-normalised features for uint8 batches, through the same runtime as Scorer."""

    compiled: object
    arch: str
    size: int
    precision: str

    @classmethod
    def load(cls, arch: str, size: int, precision: str | None = None, threads: int | None = None) -> FeatureExtractor:
        chosen = requested_precision(precision)
        return cls(compile_graph(export_backbone(arch, size), chosen, threads), arch, size, chosen)

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(np.ascontiguousarray(pixels, dtype=np.uint8))[0], dtype=np.float32)


# --- sources: files and URLs -------------------------------------------------------------------------------


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def read_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes; BadImageError for anything else (a FIFO or device would block a plain read)."""
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to returns at once instead of hanging the whole run.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise BadImageError("unreadable", error.strerror or str(error)) from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else "not a regular file"
            raise BadImageError("not_a_file", f"{path} is {kind}")
        if info.st_size > max_bytes:
            raise BadImageError("too_large", f"{info.st_size} bytes exceeds the limit of {max_bytes}")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as error:
        raise BadImageError("unreadable", error.strerror or str(error)) from error
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FetchOptions(DownloadPolicy):
    """The download policy (deadline, byte cap, per-host pacing from the settings) plus the worker threads."""

    workers: int = 8  # threads downloading and decoding; most of their time is spent waiting on the network
    retries: int = 2
    timeout: float = 15.0


class SourceReader:
    """Bytes of a source: a file read directly, a URL from the shared image cache or downloaded into it."""

    def __init__(self, cache=None, options: FetchOptions | None = None):
        self.cache = cache
        self.options = options or FetchOptions()  # made per reader: it reads the download settings
        self.cancel = threading.Event()  # set when the consumer stops: in-flight downloads give up
        self._session = None
        self._lock = threading.Lock()

    def session(self):
        from fic_assets.defs.dataset.download import make_session

        with self._lock:
            if self._session is None:
                self._session = make_session(self.options.workers)
            return self._session

    def read(self, source: str | Path) -> bytes | str:
        """The bytes, or "reason: detail" when there are none. Never raises for a bad source."""
        if not is_url(source):
            try:
                return read_file(source)
            except BadImageError as error:
                return str(error)
        from fic_assets.defs.dataset.cache import ImageCache
        from fic_assets.defs.dataset.download import fetch_one

        cache = self.cache if self.cache is not None else ImageCache.from_settings()
        data = cache.get(source)
        if data is not None:
            return data
        try:
            fetched = fetch_one(self.session(), source, self.options, self.cancel)
        except Exception as error:  # noqa: BLE001  fetch_one names the known failures; an unknown one must not stop a brand
            return f"download: {type(error).__name__}: {str(error)[:200]}"
        if fetched.data is None:
            return f"download: {fetched.error}"
        cache.put(source, fetched.data)  # whatever came back: judging it is the decoder's job, as for the image set
        return fetched.data

    def close(self) -> None:
        self.cancel.set()
        if self._session is not None:
            self._session.close()


def load_pixels(source: str | Path, size: int, reader: SourceReader) -> np.ndarray | str:
    """The source's model pixels, or the reason there are none. Never raises for a bad image."""
    data = reader.read(source)
    if isinstance(data, str):
        return data
    try:
        return model_pixels(data, size)
    except BadImageError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001  Pillow raises assorted types on malformed files; one image must not stop a run
        return f"undecodable: {type(error).__name__}: {error}"


def pixel_stream(sources: Iterable[str | Path], size: int, reader: SourceReader | None = None,
                 workers: int | None = None, window: int = 64) -> Iterator[tuple[str | Path, np.ndarray | str]]:
    """(source, pixels or reason) in input order; at most `window` sources in flight."""
    own_reader = reader is None
    reader = reader or SourceReader()
    pool = ThreadPoolExecutor(max_workers=workers or reader.options.workers, thread_name_prefix="fic-decode")
    pending: deque[tuple[str | Path, Future]] = deque()
    try:
        for source in sources:
            pending.append((source, pool.submit(load_pixels, source, size, reader)))
            if len(pending) >= window:
                item, future = pending.popleft()
                yield item, future.result()
        while pending:
            item, future = pending.popleft()
            yield item, future.result()
    finally:
        # An interrupted run (SIGTERM, a failure downstream) must not wait for slow downloads to finish.
        reader.cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        if own_reader:
            reader.close()


class ImageScore(NamedTuple):
    source: str  # the file path or URL as given
    label: str  # worn / not_worn, or "error"
    score: float | None  # P(worn); None for an error
    error: str | None  # "download: HTTP 404", "truncated: ...", ...


def score_stream(sources: Iterable[str | Path], scorer: Scorer, reader: SourceReader | None = None,
                 batch_size: int = 16, workers: int | None = None) -> Iterator[ImageScore]:
    """One ImageScore per source: errors as soon as they are known, scores a batch at a time."""
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[ImageScore]:
        scores = scorer.scores(np.stack([pixels for _, pixels in batch]))
        yield from (ImageScore(source, scorer.label(score), score, None) for (source, _), score in zip(batch, scores, strict=True))
        batch.clear()

    # closing(): when this generator is closed early, the pixel stream's downloads are cancelled right away.
    with closing(pixel_stream(sources, scorer.size, reader, workers, window=max(4 * batch_size, 32))) as stream:
        for source, pixels in stream:
            if isinstance(pixels, str):
                yield ImageScore(str(source), ERROR_LABEL, None, pixels)
                continue
            batch.append((str(source), pixels))
            if len(batch) >= batch_size:
                yield from flush()
    if batch:
        yield from flush()


@dataclass
class SourceScores:
    scores: dict[str, float] = field(default_factory=dict)  # source -> P(worn)
    errors: dict[str, str] = field(default_factory=dict)  # source -> why it has no score

    @classmethod
    def collect(cls, rows: Iterable[ImageScore]) -> SourceScores:
        result = cls()
        for row in rows:
            if row.error is None:
                result.scores[row.source] = row.score
            else:
                result.errors[row.source] = row.error
        return result


def score_sources(sources: Iterable[str | Path], model_dir: str | Path, reader: SourceReader | None = None) -> SourceScores:
    """P(worn) for each distinct source with the model in model_dir (pre-annotations, the quality check)."""
    scorer = Scorer.load(model_dir)
    return SourceScores.collect(score_stream(dict.fromkeys(sources), scorer, reader))
