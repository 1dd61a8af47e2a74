"""Turn downloaded image bytes into an RGB Pillow image, or a BadImageError that says what is wrong.

Shop images arrive broken in the usual ways (cut-off downloads, empty bodies, an HTML error page served as
image/jpeg, decompression bombs) and in awkward modes (CMYK, palette, alpha). Labelling, training and
inference all go through decode_rgb so they agree on what is usable.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

# Shop photos are ~0.2-2 MP; anything above this is a mistake or an attack, refused before decoding.
MAX_PIXELS = 40_000_000


class BadImageError(ValueError):
    """An image that cannot be used; `reason` is a short code stored with the rejected URL."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _describe_non_image(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in data[:512].lower():
        return "the body is an HTML page, not an image"
    return f"unrecognised format (first bytes {data[:8]!r})"


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Identify the image and check its size without decoding the pixels."""
    if not data:
        raise BadImageError("empty", "0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise BadImageError("not_an_image", _describe_non_image(data)) from error
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise BadImageError("too_large", str(error)) from error
    except OSError as error:  # the headers themselves are cut off ("Truncated File Read")
        raise BadImageError("truncated", str(error)) from error
    width, height = image.size
    if width * height > max_pixels:
        raise BadImageError("too_large", f"{width}x{height} pixels exceeds the limit of {max_pixels}")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for every mode; transparency is flattened onto white, as a shop shows a cut-out packshot."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode fully (a truncated file fails here, not later in a batch), turn upright (EXIF) and convert to RGB.

    draft_size lets the JPEG decoder scale down while decoding, much faster when the caller resizes anyway.
    """
    image = open_image(data, max_pixels)
    try:
        # draft() already reads JPEG markers, so a cut-off file can fail here too.
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", draft_size)
        image.load()
    except OSError as error:  # Pillow reports cut-off data as OSError("image file is truncated ...")
        raise BadImageError("truncated", str(error)) from error
    return to_rgb(upright(image))


EXIF_ORIENTATION = 0x0112


def upright(image: Image.Image) -> Image.Image:
    """The image as a browser shows it: phone photos store their rotation in EXIF instead of the pixels."""
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001  a damaged EXIF block must not make a good picture unusable
        return image
    return ImageOps.exif_transpose(image) if orientation not in (1, None) else image
