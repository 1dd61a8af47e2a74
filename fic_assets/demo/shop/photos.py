"""Real photos in place of the drawings: `fic demo-shop --photos DIR` and `fic demo --photos DIR`.

DIR holds a `worn/` and a `not_worn/` folder of photos (any format Pillow reads; subfolders are searched too,
hidden files and folders are not). The folder a photo sits in is its kept truth. Every file is checked once at
start with the platform's own decoder (`fic_assets.platform.imaging.decode_rgb`, the check labelling, training and
predictions use), so the shop never serves a photo the platform would reject:

- a file that does not decode (not an image, cut off, too large) is SKIPPED with a warning naming it and why;
  a stray `Thumbs.db` or a HEIC photo Pillow cannot read should not stop a demo, and the warning says what was left out;
- a class folder left without a single readable photo is an error (PhotosError) that names every file it tried.

Photos are read from DIR when they are served, never copied anywhere. Their real format is what Pillow finds in
the bytes, not what the file name says, and that is the Content-Type the shop sends.
"""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage

LABELS = ("worn", "not_worn")


class PhotosError(ValueError):
    """DIR cannot be used: missing, without worn/ or not_worn/, or a class folder without a readable photo."""


@dataclass(frozen=True)
class Photo:
    path: str  # relative to DIR, with forward slashes: "worn/street/a.jpg"; the truth file's `photo` column
    label: str  # worn | not_worn: the class folder it sits in
    file: Path  # absolute path, read each time the photo is served
    format: str  # what Pillow found in the bytes: JPEG, PNG, WEBP, ...
    content_type: str  # the MIME type of that format: image/jpeg, image/png, ...
    size: tuple[int, int]  # stored width x height (before any EXIF rotation)

    def read(self) -> bytes:
        return self.file.read_bytes()


@dataclass(frozen=True)
class PhotoSet:
    root: Path
    worn: tuple[Photo, ...]
    not_worn: tuple[Photo, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (relative path, why) of files left out

    def of(self, label: str) -> tuple[Photo, ...]:
        return self.worn if label == "worn" else self.not_worn

    @property
    def fingerprint(self) -> str:
        """What the catalogue's truth depends on: the photos kept, by path and class. Two shops (or a shop and
        `fic demo`) with the same fingerprint and seed agree on every image URL and its truth."""
        listing = "\n".join(photo.path for photo in (*self.worn, *self.not_worn))
        return hashlib.blake2b(listing.encode("utf-8"), digest_size=8).hexdigest()

    def describe(self) -> dict:
        """For /_demo/health: which photos a running shop serves."""
        return {"dir": str(self.root), "fingerprint": self.fingerprint, "worn": len(self.worn),
                "not_worn": len(self.not_worn), "skipped": len(self.skipped)}


def warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def candidate_files(folder: Path) -> list[Path]:
    """Every file under folder, sorted, without hidden files or anything inside hidden folders."""
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def probe(file: Path) -> tuple[str, str, tuple[int, int]]:
    """(format, content type, size) of a photo the platform can use; raises ValueError saying why not."""
    from fic_assets.platform.imaging import BadImageError, decode_rgb

    try:
        data = file.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read: {error.strerror or error}") from error
    try:
        # Decodes everything (a cut-off file fails here); draft keeps a 12 MP JPEG to a few milliseconds.
        decode_rgb(data, draft_size=(256, 256))
    except BadImageError as error:
        raise ValueError(str(error)) from error
    except Exception as error:  # noqa: BLE001  Pillow raises many kinds for odd files; any of them means unusable
        raise ValueError(f"cannot decode: {error!r}") from error
    with PILImage.open(io.BytesIO(data)) as image:
        return image.format, image.get_format_mimetype() or "application/octet-stream", image.size


def load_photos(folder: str | Path, warn: Callable[[str], None] = warn_stderr) -> PhotoSet:
    """Check DIR and every photo in it; raises PhotosError when it cannot be used (see the module docstring)."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise PhotosError(f"photos folder {root} does not exist")
    if not root.is_dir():
        raise PhotosError(f"photos folder {root} is not a folder")
    root = root.resolve()
    missing = [label for label in LABELS if not (root / label).is_dir()]
    if missing:
        present = sorted(path.name + ("/" if path.is_dir() else "") for path in root.iterdir() if not path.name.startswith("."))
        raise PhotosError(
            f"photos folder {root} has no {' and no '.join(f'{label}/' for label in missing)} subfolder "
            f"(it holds: {', '.join(present) or 'nothing'}); put photos of worn garments in {root / 'worn'}/ "
            f"and all others in {root / 'not_worn'}/"
        )
    kept: dict[str, list[Photo]] = {label: [] for label in LABELS}
    skipped: list[tuple[str, str]] = []
    for label in LABELS:
        files = candidate_files(root / label)
        bad: list[tuple[str, str]] = []
        for file in files:
            relative = file.relative_to(root).as_posix()
            try:
                fmt, content_type, size = probe(file)
            except ValueError as error:
                bad.append((relative, str(error)))
                continue
            kept[label].append(Photo(relative, label, file.absolute(), fmt, content_type, size))
        if not kept[label]:
            detail = "; ".join(f"{path} ({why})" for path, why in bad) if bad else "the folder is empty"
            raise PhotosError(f"no readable photo in {root / label}/: {detail}")
        for path, why in bad:
            warn(f"skipping photo {root / path}: {why}")
        skipped.extend(bad)
    return PhotoSet(root, tuple(kept["worn"]), tuple(kept["not_worn"]), tuple(skipped))
