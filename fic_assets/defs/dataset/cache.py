"""A local content cache of downloaded image bytes, keyed by URL; shared by the image set and inference.

Each entry is two files named by the sha256 of the URL: the bytes, and a JSON sidecar with the sha256 and size
of those bytes. A read re-hashes the bytes, so a file cut short by a crash, a full disk or a stray edit is found
and treated as a miss (the caller fetches it again) instead of reaching training as a silently broken image.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from fic_assets.platform import settings


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, then rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class ImageCache:
    """Bytes of fetched URLs under root/<key[:2]>/<key> with the sidecar <key>.json beside them."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.corrupt = 0  # entries found damaged and dropped since this object was made

    @classmethod
    def from_settings(cls) -> ImageCache:
        return cls(image_cache_dir())

    def data_path(self, url: str) -> Path:
        key = url_key(url)
        # Two-character fan-out keeps directories small at a few hundred thousand images.
        return self.root / key[:2] / key

    def sidecar_path(self, url: str) -> Path:
        return self.data_path(url).with_suffix(".json")

    def get(self, url: str) -> bytes | None:
        """The cached bytes, or None when absent or damaged (a damaged entry is removed)."""
        try:
            data = self.data_path(url).read_bytes()
            meta = json.loads(self.sidecar_path(url).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._drop(url)
            return None
        if meta.get("sha256") != hashlib.sha256(data).hexdigest() or meta.get("size") != len(data):
            self._drop(url)
            return None
        return data

    def put(self, url: str, data: bytes) -> None:
        # Bytes first, sidecar last: a crash in between leaves a sidecar that does not match, read as a miss.
        meta = {"url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        atomic_write(self.data_path(url), data)
        atomic_write(self.sidecar_path(url), json.dumps(meta, sort_keys=True).encode("utf-8"))

    def discard(self, url: str) -> None:
        self.data_path(url).unlink(missing_ok=True)
        self.sidecar_path(url).unlink(missing_ok=True)

    def _drop(self, url: str) -> None:
        self.corrupt += 1
        self.discard(url)


def image_cache_dir() -> Path:
    configured = settings.get("FIC_IMAGE_CACHE_DIR")
    return Path(configured) if configured else Path(settings.get("FIC_DATA_DIR")) / "cache" / "images"
