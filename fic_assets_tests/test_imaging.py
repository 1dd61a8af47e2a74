"""Every broken or awkward image the demo shop serves, fetched over real HTTP and decoded by fic_assets.platform.imaging."""

from __future__ import annotations

import io
import urllib.error
import urllib.request

import pytest
from PIL import Image

from fic_assets.demo.shop.catalogue import build_catalogue, image_url
from fic_assets.platform.imaging import BadImageError, decode_rgb


@pytest.fixture(scope="module")
def defect_urls(demo_shop_url) -> dict[str, str]:
    catalogue = build_catalogue(seed=42)
    return {image.defect: image_url(demo_shop_url, image) for product in catalogue.products for image in product.images if image.defect}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.mark.parametrize(
    ("defect", "reason"),
    [
        ("truncated", "truncated"),  # the first 40% of a JPEG
        ("empty", "empty"),  # 0 bytes served as image/jpeg
        ("html", "not_an_image"),  # an HTML error page served as image/jpeg
        ("huge", "too_large"),  # a decompression bomb: 14000x14000 pixels in a small file
    ],
)
def test_bad_image_gives_a_clear_reason(defect_urls, defect, reason):
    with pytest.raises(BadImageError) as error:
        decode_rgb(fetch(defect_urls[defect]))
    assert error.value.reason == reason
    assert str(error.value).startswith(reason + ": ") and error.value.detail


def test_html_served_as_jpeg_says_it_is_html(defect_urls):
    with pytest.raises(BadImageError, match="HTML page"):
        decode_rgb(fetch(defect_urls["html"]))


def test_missing_image_is_a_404(defect_urls):
    """Bad input: an image URL the shop answers with 404 (the downloader records it; nothing to decode)."""
    with pytest.raises(urllib.error.HTTPError) as error:
        fetch(defect_urls["missing"])
    assert error.value.code == 404


@pytest.mark.parametrize("defect", ["cmyk", "png_alpha"])
def test_cmyk_and_alpha_images_become_rgb(defect_urls, defect):
    """Awkward input: a CMYK JPEG and an RGBA PNG (behind a .jpg URL) are usable after conversion."""
    data = fetch(defect_urls[defect])
    assert Image.open(io.BytesIO(data)).mode in ("CMYK", "RGBA")
    image = decode_rgb(data)
    assert image.mode == "RGB" and image.size[0] > 100


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    assert decode_rgb(buffer.getvalue()).getpixel((0, 0)) == (255, 255, 255)


def test_draft_decoding_scales_a_jpeg_down_while_decoding(demo_shop_url):
    catalogue = build_catalogue(seed=42)
    good = next(i for p in catalogue.products for i in p.images if not i.defect)
    data = fetch(image_url(demo_shop_url, good))
    full = decode_rgb(data)
    small = decode_rgb(data, draft_size=(100, 100))
    assert small.size[0] < full.size[0] and small.size[0] >= 100


def test_truncated_jpeg_with_draft_is_a_bad_image_not_an_oserror(defect_urls):
    """Bad input: a cut-off JPEG decoded with draft() (the fast path inference uses)."""
    with pytest.raises(BadImageError) as error:
        decode_rgb(fetch(defect_urls["truncated"]), draft_size=(96, 96))
    assert error.value.reason == "truncated"
