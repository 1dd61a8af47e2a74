"""Build the training image set: one deterministic RGB JPEG per labelled image, in a directory per label.

out_dir/worn/<sha1(url)[:16]>.jpg and out_dir/not_worn/<...>.jpg mirror the labels exactly: a new label adds a
file, a flipped label moves it, a label that is gone (or became `unusable`) removes it. The same bytes in give
the same file out (fixed encoder settings, no EXIF, ICC or timestamps), so an unchanged label set keeps its DVC
hash and DVC stores nothing new. Images that cannot be used are rejected with a reason, kept in `image_rejects`
(one table of warehouse.SCHEMA).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import requests
from PIL import Image

from fic_assets.defs.dataset.cache import ImageCache, atomic_write
from fic_assets.defs.dataset.dvc import DvcProject
from fic_assets.defs.dataset.download import fetch_many
from fic_assets.platform.imaging import BadImageError, decode_rgb
from fic_assets.platform.warehouse import transaction, upsert, utcnow

LABELS = ("worn", "not_worn")
# Fixed encoder settings: part of the set's identity. Changing them rewrites every file (and the DVC hash).
JPEG_OPTIONS = {"format": "JPEG", "quality": 92, "subsampling": 0, "optimize": False, "progressive": False}


@dataclass(frozen=True)
class Reject:
    image_url: str
    label: str
    reason: str


@dataclass
class ImageSetResult:
    counts: dict[str, int]  # files per label in the set after the build
    written: int  # files encoded and written (new images)
    unchanged: int  # files already in place
    moved: int  # files moved to another label directory (the label flipped)
    removed: int  # files deleted (image no longer labelled worn/not_worn)
    rejects: list[Reject] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # URLs whose file is in the set now
    from_cache: int = 0  # images read from the content cache instead of downloaded
    downloaded: int = 0

    def as_metadata(self) -> dict[str, int]:
        return {
            **{f"images_{label}": count for label, count in self.counts.items()},
            "written": self.written, "unchanged": self.unchanged, "moved": self.moved, "removed": self.removed,
            "rejected": len(self.rejects), "from_cache": self.from_cache, "downloaded": self.downloaded,
        }


def file_name(url: str) -> str:
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:16] + ".jpg"


def encode_jpeg(data: bytes) -> bytes:
    """Decode (raising BadImageError) and re-encode as a plain RGB JPEG with fixed settings."""
    image = decode_rgb(data)
    # A fresh image without the source's info dict: no EXIF, ICC profile or DPI can ride along.
    clean = Image.frombytes("RGB", image.size, image.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, **JPEG_OPTIONS)
    return buffer.getvalue()


def wanted_files(labelled: Iterable[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """{label/file name: (url, label)} for the trainable labels; a URL listed twice keeps its last label."""
    by_url: dict[str, str] = {}
    for url, label in labelled:
        by_url[url] = label
    return {f"{label}/{file_name(url)}": (url, label) for url, label in by_url.items() if label in LABELS}


def existing_files(out_dir: Path) -> set[str]:
    """label/name of every file in the label directories (stray temp files included, so they get removed)."""
    return {f"{label}/{path.name}" for label in LABELS if (out_dir / label).is_dir()
            for path in (out_dir / label).iterdir() if path.is_file()}


def build_image_set(
    labelled: Sequence[tuple[str, str]],
    out_dir: str | Path,
    cache: ImageCache,
    workers: int = 8,
    session: requests.Session | None = None,
) -> ImageSetResult:
    """Make out_dir hold exactly the usable images of `labelled` ([(image_url, label)]), each under its label."""
    out_dir = Path(out_dir)
    for label in LABELS:
        (out_dir / label).mkdir(parents=True, exist_ok=True)
    wanted = wanted_files(labelled)
    present = existing_files(out_dir)
    by_name = {rel.split("/", 1)[1]: rel for rel in present}
    result = ImageSetResult(counts={}, written=0, unchanged=0, moved=0, removed=0)

    to_fetch: dict[str, tuple[str, str]] = {}
    for rel, (url, label) in wanted.items():
        if rel in present:
            result.unchanged += 1
            result.accepted.append(url)
        elif file_name(url) in by_name:
            # The label flipped: the pixels are the same, so move the file instead of fetching it again.
            old = by_name[file_name(url)]
            os.replace(out_dir / old, out_dir / rel)
            present.discard(old)
            result.moved += 1
            result.accepted.append(url)
        else:
            to_fetch[rel] = (url, label)

    fetched = fetch_many([url for url, _ in to_fetch.values()], cache, workers=workers, session=session)
    for rel, (url, label) in to_fetch.items():
        outcome = fetched[url]
        result.from_cache += outcome.from_cache
        result.downloaded += outcome.ok and not outcome.from_cache
        if outcome.data is None:
            result.rejects.append(Reject(url, label, f"download: {outcome.error}"))
            continue
        try:
            atomic_write(out_dir / rel, encode_jpeg(outcome.data))
        except BadImageError as error:
            result.rejects.append(Reject(url, label, f"{error.reason}: {error.detail}"))
            continue
        result.written += 1
        result.accepted.append(url)

    for rel in sorted(present - wanted.keys()):
        (out_dir / rel).unlink(missing_ok=True)
        result.removed += 1
    result.counts = {label: sum(1 for _ in (out_dir / label).glob("*.jpg")) for label in LABELS}
    return result


def store_rejects(con: duckdb.DuckDBPyConnection, result: ImageSetResult, rejected_at: datetime | None = None) -> None:
    """Upsert this build's rejects and forget the rejects of images that are in the set now.

    `image_rejects` is in warehouse.SCHEMA: a write connection of warehouse.connect has it."""
    rejected_at = rejected_at or utcnow()
    with transaction(con):
        if result.accepted:
            con.execute("DELETE FROM image_rejects WHERE list_contains(?, image_url)", [result.accepted])
        if result.rejects:
            rows = [{"image_url": r.image_url, "label": r.label, "reason": r.reason, "rejected_at": rejected_at} for r in result.rejects]
            upsert(con, "image_rejects", rows, key=["image_url"])


def trainable_labels(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(image_url, label) of every human label a model can learn from (unusable ones excluded)."""
    return con.execute("SELECT image_url, label FROM labels WHERE label IN ('worn', 'not_worn') ORDER BY image_url").fetchall()


class NoTrainableLabels(RuntimeError):
    """DuckDB holds no worn / not_worn human label: there is nothing to build an image set from."""


@dataclass(frozen=True)
class PublishedImageSet:
    digest: str  # the DVC directory hash (`<md5>.dir`) of the set, pushed to the remote
    result: ImageSetResult


def publish_image_set(
    connect: Callable[..., AbstractContextManager[duckdb.DuckDBPyConnection]],
    out_dir: str | Path,
    cache: ImageCache,
    open_project: Callable[[], DvcProject],
) -> PublishedImageSet:
    """The whole `image_set` step: the trainable labels as an image set in out_dir, its rejects recorded,
    versioned with DVC and pushed.

    connect(read_only=...) opens DuckDB (a context manager), briefly: to read the labels, then to record the
    rejects. open_project() gives the DVC project (with its remote), asked for only once the set is built.
    The push comes last: if the remote is down the call fails loudly, the local set and its DVC hash stay,
    and the next call pushes the same hash.
    """
    with connect(read_only=True) as con:
        labelled = trainable_labels(con)
    if not labelled:
        raise NoTrainableLabels("no worn / not_worn human labels yet: label some images in Label Studio first (materialize `human_labels`)")
    result = build_image_set(labelled, out_dir, cache)
    with connect() as con:
        store_rejects(con, result)
    project = open_project()
    digest = project.add(out_dir)
    project.push(out_dir)
    return PublishedImageSet(digest, result)
