"""The demo shop, served for real on a free port: catalogue, pages, the deliberate defects, the truth file and
the `fic demo-shop --background/--stop` command. Pages are parsed with parsel, as the crawler does."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import urllib.error
import urllib.request
from collections import defaultdict
from urllib.parse import urljoin

import pytest
from parsel import Selector
from PIL import Image as PILImage

from fic_assets.demo.shop import server
from fic_assets_tests.conftest import free_port
from fic_assets.demo.shop.catalogue import (
    Catalogue,
    Image,
    Product,
    build_catalogue,
    catalogue_for,
    cents,
    image_url,
    truth_csv,
    write_truth_csv,
)
from fic_assets.demo.shop.images import HUGE_SIZE, flat_grey_jpeg

SKU = re.compile(r"[A-Z0-9]{9}-[A-Z0-9]{3}")
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return catalogue_for(42)


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def page(url: str) -> Selector:
    status, _, body = fetch(url)
    assert status == 200, url
    return Selector(text=body.decode())


def ld_objects(selector: Selector) -> list[dict]:
    """Every object in the page's ld+json scripts, lists and @graph flattened."""
    found: list[dict] = []
    for text in selector.xpath('//script[@type="application/ld+json"]/text()').getall():
        data = json.loads(text)
        for item in data if isinstance(data, list) else [data]:
            found.extend(item.get("@graph", [item]))
    return found


def ld_products(selector: Selector) -> list[dict]:
    return [item for item in ld_objects(selector) if item.get("@type") == "Product"]


def with_page_defect(catalogue: Catalogue, defect: str) -> Product:
    return next(p for p in catalogue.products if p.page_defect == defect)


def with_image_defect(catalogue: Catalogue, defect: str) -> Image:
    return next(image for p in catalogue.products for image in p.images if image.defect == defect)


def plain_product(catalogue: Catalogue, **wanted: object) -> Product:
    """A product without defects matching the wanted attribute values."""
    return next(
        p for p in catalogue.products
        if not p.page_defect and not any(i.defect for i in p.images) and all(getattr(p, k) == v for k, v in wanted.items())
    )


# --- the catalogue --------------------------------------------------------------------------------------

def test_same_seed_builds_an_equal_catalogue_and_another_seed_does_not():
    assert build_catalogue(42) == build_catalogue(42)
    assert build_catalogue(7) != build_catalogue(42)


def test_catalogue_has_enough_brands_products_and_images_of_both_truths(catalogue):
    assert len(catalogue.brands) >= 10 and len(catalogue.products) >= 400
    names = {brand.name for brand in catalogue.brands}
    assert {"Levi's", "Jack & Jones", "Selected Femme/Homme", "Marc O'Polo", "Björn Borg", "Ève & Söhne"} <= names
    assert sum(not name.isascii() for name in names) >= 2
    assert all(SLUG.fullmatch(brand.path) for brand in catalogue.brands)
    skus = [p.sku for p in catalogue.products]
    assert len(set(skus)) == len(skus) and all(SKU.fullmatch(sku) for sku in skus)
    assert all(2 <= len(p.images) <= 6 and 3 <= len(p.offers) <= 8 for p in catalogue.products)
    truths = [image.truth for p in catalogue.products for image in p.images]
    assert 0.4 < truths.count("worn") / len(truths) < 0.6
    assert {image.kind for p in catalogue.products for image in p.images} == {"worn", "packshot", "flatlay", "detail"}


def test_prices_include_sales_and_per_size_prices_and_the_item_price_is_the_lowest(catalogue):
    offers = [offer for p in catalogue.products for offer in p.offers]
    assert all(re.fullmatch(r"\d+\.\d\d", offer.price) for offer in offers)
    assert all(cents(offer.old_price) > cents(offer.price) for offer in offers if offer.old_price)
    assert any(p.old_price for p in catalogue.products)
    varied = [p for p in catalogue.products if len({offer.price for offer in p.offers}) > 1]
    assert varied and all(p.price == min((o.price for o in p.offers), key=cents) for p in varied)


# --- listings -------------------------------------------------------------------------------------------

def test_robots_txt_disallows_account_cart_and_demo_paths(demo_shop_url):
    status, _, body = fetch(f"{demo_shop_url}/robots.txt")
    assert status == 200
    assert body.decode().splitlines() == ["User-agent: *", "Disallow: /myaccount/", "Disallow: /cart/", "Disallow: /_demo/"]


def test_brand_index_lists_one_link_per_brand(demo_shop_url, catalogue):
    selector = page(f"{demo_shop_url}/brands/")
    links = dict(zip(selector.css("li a::attr(href)").getall(), selector.css("li a::text").getall()))
    assert links == {f"/{brand.path}/": brand.name for brand in catalogue.brands}


def walk_listing(first_url: str) -> tuple[list[Selector], list[str]]:
    """Follow the next links from the first listing page; return the pages and the product paths."""
    pages, paths, url = [], [], first_url
    while url:
        selector = page(url)
        pages.append(selector)
        paths += [urljoin(url, href).split("/", 3)[3] for href in selector.css("article a::attr(href)").getall()]
        next_href = selector.css('nav a[rel="next"]::attr(href)').get()
        url = urljoin(url, next_href) if next_href else None
    return pages, ["/" + path for path in paths]


def test_brand_pagination_reaches_the_last_page_which_has_no_next_link(demo_shop_url, catalogue):
    brand = max(catalogue.brands, key=lambda b: len(catalogue.listing(b.path)))
    products = catalogue.listing(brand.path)
    pages, paths = walk_listing(f"{demo_shop_url}/{brand.path}/")
    assert len(pages) == -(-len(products) // 24) == 3
    assert paths == [p.path for p in products]
    last = pages[-1]
    assert "Seite 3 von 3" in " ".join(last.css("nav ::text").getall())
    assert not last.css('a[rel="next"]') and f"/{brand.path}/?p=4" not in last.get()
    hrefs = pages[0].css("article a::attr(href)").getall()
    assert any(h.startswith("http://") for h in hrefs) and any(h.startswith("/") for h in hrefs)
    assert all(img.attrib["alt"] for img in pages[0].css("article img"))


def test_category_listing_shows_only_that_category_of_the_brand(demo_shop_url, catalogue):
    brand = catalogue.brand_by_path["levis"]
    _, paths = walk_listing(f"{demo_shop_url}/women-clothing/levis/")
    assert paths == [p.path for p in catalogue.listing(brand.path, "women-clothing")]


@pytest.mark.parametrize("path", ["/levis/?p=9", "/levis/?p=0", "/no-such-brand/", "/shoes/vero-moda/", "/x.html",
                                  "/img/article/0000.jpg"])
def test_unknown_paths_and_pages_are_404_with_a_small_html_body(demo_shop_url, path):
    status, headers, body = fetch(demo_shop_url + path)
    assert status == 404 and headers["Content-Type"].startswith("text/html") and b"404" in body


# --- product pages --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["object", "list", "graph"])
def test_product_page_has_exactly_one_product_with_its_own_images_not_the_recommendations(demo_shop_url, catalogue, shape):
    product = plain_product(catalogue, jsonld_shape=shape)
    selector = page(demo_shop_url + product.path)
    assert selector.xpath("/html/@lang").get() == "de-DE"
    [data] = ld_products(selector)
    own = [image_url(demo_shop_url, image) for image in product.images]
    assert data["sku"] == product.sku and data["name"] == product.name and data["brand"]["name"] == product.brand.name
    assert data["image"] == own
    assert [offer["price"] for offer in data["offers"]] == [offer.price for offer in product.offers]
    assert {item["@type"] for item in ld_objects(selector)} >= {"Product", "BreadcrumbList"}

    assert selector.css("h1 span::text").get() == product.name
    assert selector.css(f'a[href="/{product.brand.path}/"] h3::text').get() == product.brand.name
    assert f"{product.price.replace('.', ',')} €" in selector.xpath("//h1/following-sibling::p[1]//text()").getall()
    assert selector.xpath('//p[span="Farbe:"]/span[2]/text()').get() == product.colour
    alt = f"{product.brand.name} {product.name} - {product.colour}"
    gallery = [img.attrib["src"] for img in selector.css("ul img") if img.attrib["alt"] == alt]
    assert gallery == own + [image_url(demo_shop_url, image, 156) for image in product.images]

    cards = selector.css("section article")
    assert len(cards) >= 40
    recommended = {img.attrib["src"] for img in cards.css("img")}
    assert not recommended & set(own)
    assert all(product.name not in img.attrib["alt"] for img in cards.css("img"))


def test_product_and_listing_pages_have_the_real_pages_weight_and_shape(demo_shop_url, catalogue):
    """Like a real Zalando page (~700 KB): Rendering Engine wrappers each followed by their hydration state, inline
    styles, tracking scripts, one JSON-LD Product with per-size offers; the same bytes on every request."""
    product = plain_product(catalogue)
    status, _, body = fetch(demo_shop_url + product.path)
    text = body.decode()
    assert status == 200 and 550_000 < len(body) < 1_000_000
    wrappers = re.findall(r"</(x-wrapper-re-[\d-]+)>\s*<script data-re-asset type=\"application/json\"[^>]*>", text)
    assert len(wrappers) >= 3 and len(set(wrappers)) == len(wrappers)
    states = re.findall(r'<script data-re-asset type="application/json"[^>]*>(.*?)</script>', text, re.S)
    assert all(json.loads(state) for state in states) and sum(map(len, states)) > 300_000
    assert "<style" in text and text.count("<script>") >= 2  # inline styles, tracking scripts
    [data] = ld_products(Selector(text=text))
    assert [offer["sku"] for offer in data["offers"]] == [offer.sku for offer in product.offers]
    assert fetch(demo_shop_url + product.path)[2] == body
    listing = fetch(f"{demo_shop_url}/{product.brand.path}/")[2]
    assert len(listing) > 400_000 and b"x-wrapper-re-" in listing and b"data-re-asset" in listing


def test_page_weight_is_deterministic_per_seed():
    from fic_assets.demo.shop.pages import Shop

    path = catalogue_for(42).products[0].path
    first, again = (Shop(catalogue_for(42)).respond(path, {}, "http://shop.test").body for _ in range(2))
    other_catalogue = catalogue_for(7)
    other = Shop(other_catalogue).respond(other_catalogue.products[0].path, {}, "http://shop.test").body
    assert first == again and first != other and len(other) > 550_000


def test_product_page_with_the_brand_link_inside_the_h1(demo_shop_url, catalogue):
    product = plain_product(catalogue, brand_in_h1=True)
    selector = page(demo_shop_url + product.path)
    assert selector.css(f'h1 a[href="/{product.brand.path}/"] h3::text').get() == product.brand.name
    assert selector.css("h1 > span::text").get() == product.name


def test_sale_product_shows_the_struck_old_price_then_the_current_one(demo_shop_url, catalogue):
    product = next(p for p in catalogue.products if p.old_price and not p.page_defect)
    selector = page(demo_shop_url + product.path)
    price = selector.xpath("//h1/following-sibling::p[1]")
    assert price.css("s::text").get() == f"{product.old_price.replace('.', ',')} €"
    assert price.css("s + span::text").get() == f"{product.price.replace('.', ',')} €"
    assert {offer["price"] for offer in ld_products(selector)[0]["offers"]} == {o.price for o in product.offers}


def test_page_without_jsonld_keeps_the_html_fallback(demo_shop_url, catalogue):
    """Bad input: a product page with no ld+json at all; name, brand and gallery stay in the markup."""
    product = with_page_defect(catalogue, "no_jsonld")
    selector = page(demo_shop_url + product.path)
    assert not selector.xpath('//script[@type="application/ld+json"]')
    assert selector.css("h1 span::text").get() == product.name
    assert len(selector.css(f'ul img[alt*="{product.name}"]')) == 2 * len(product.images)


def test_page_with_missing_price_has_no_offers_and_no_price_text(demo_shop_url, catalogue):
    """Bad input: a product without any price, neither in the JSON-LD nor in the markup."""
    product = with_page_defect(catalogue, "missing_price")
    selector = page(demo_shop_url + product.path)
    [data] = ld_products(selector)
    assert "offers" not in data
    assert "€" not in "".join(selector.css("h1 ~ p ::text").getall())


def test_truncated_page_is_a_200_that_ends_before_the_gallery(demo_shop_url, catalogue):
    """Bad input: a page cut off after the h1, served as a normal 200 with a matching Content-Length."""
    product = with_page_defect(catalogue, "truncated")
    status, headers, body = fetch(demo_shop_url + product.path)
    text = body.decode()
    assert status == 200 and int(headers["Content-Length"]) == len(body)
    # No ld+json script in the body (the header's hydration state quotes one inside JSON, with escaped quotes).
    assert "</h1>" in text and "</html>" not in text and '<script type="application/ld+json">' not in text.split("</head>")[1]
    assert "/img/article/" not in text.split("</h1>")[1]


def test_page_with_broken_jsonld_does_not_parse_but_its_markup_is_intact(demo_shop_url, catalogue):
    """Bad input: the Product ld+json is cut in half (not JSON); the HTML around it is fine."""
    product = with_page_defect(catalogue, "broken_jsonld")
    selector = page(demo_shop_url + product.path)
    texts = selector.xpath('//script[@type="application/ld+json"]/text()').getall()
    broken = [text for text in texts if '"Product"' in text]
    assert len(broken) == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken[0])
    assert selector.css("h1 span::text").get() == product.name and len(selector.css("section article")) >= 40


def test_js_page_holds_no_product_until_a_browser_runs_it(demo_shop_url, catalogue):
    """Bad input for a plain HTTP crawler: everything is built by inline JavaScript."""
    product = plain_product(catalogue)
    status, _, body = fetch(f"{demo_shop_url}/_js{product.path}")
    text = body.decode()
    assert status == 200 and "<script>" in text
    assert "<h1" not in text and "ld+json" not in text and product.name not in text and product.sku not in text


# --- images ---------------------------------------------------------------------------------------------

def image_response(base_url: str, image: Image, width: int = 1800) -> tuple[int, dict[str, str], bytes]:
    return fetch(image_url(base_url, image, width))


def test_images_are_deterministic_jpegs_and_thumbnails_are_smaller(demo_shop_url, catalogue):
    product = plain_product(catalogue)
    first, headers, body = image_response(demo_shop_url, product.images[0])
    assert first == 200 and headers["Content-Type"] == "image/jpeg" and int(headers["Content-Length"]) == len(body)
    assert image_response(demo_shop_url, product.images[0])[2] == body
    assert PILImage.open(io.BytesIO(body)).size == (420, 560)
    thumb = PILImage.open(io.BytesIO(image_response(demo_shop_url, product.images[0], 156)[2]))
    assert thumb.size == (156, 208)


def corners(body: bytes) -> list[tuple[int, ...]]:
    picture = PILImage.open(io.BytesIO(body)).convert("RGB")
    return [picture.getpixel((x, y)) for x in (2, picture.width - 3) for y in (2, picture.height - 3)]


def test_packshots_stand_on_white_and_worn_images_do_not(demo_shop_url, catalogue):
    kinds = {image.kind: image for p in catalogue.products[:40] for image in p.images if not image.defect}
    assert all(min(pixel) > 245 for pixel in corners(image_response(demo_shop_url, kinds["packshot"])[2]))
    assert not all(min(pixel) > 245 for pixel in corners(image_response(demo_shop_url, kinds["worn"])[2]))
    assert "filter=packshot" in image_url(demo_shop_url, kinds["packshot"])
    assert "filter=packshot" not in image_url(demo_shop_url, kinds["flatlay"])


def test_images_and_pages_allow_any_origin(demo_shop_url, catalogue):
    product = plain_product(catalogue)
    assert image_response(demo_shop_url, product.images[0])[1]["Access-Control-Allow-Origin"] == "*"
    assert fetch(demo_shop_url + product.path)[1]["Access-Control-Allow-Origin"] == "*"


def test_truncated_jpeg_is_served_truncated(demo_shop_url, catalogue):
    """Bad input: the first 40 % of a JPEG, served as a complete image/jpeg."""
    status, headers, body = image_response(demo_shop_url, with_image_defect(catalogue, "truncated"))
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert int(headers["Content-Length"]) == len(body) and not body.endswith(b"\xff\xd9")
    with pytest.raises(OSError):
        PILImage.open(io.BytesIO(body)).load()


def test_empty_image_is_zero_bytes_of_image_jpeg(demo_shop_url, catalogue):
    """Bad input: a 200 image/jpeg response without a single byte."""
    status, headers, body = image_response(demo_shop_url, with_image_defect(catalogue, "empty"))
    assert (status, headers["Content-Type"], headers["Content-Length"], body) == (200, "image/jpeg", "0", b"")


def test_html_error_page_is_served_as_image_jpeg(demo_shop_url, catalogue):
    """Bad input: an HTML error page behind an image URL, labelled image/jpeg."""
    status, headers, body = image_response(demo_shop_url, with_image_defect(catalogue, "html"))
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body.startswith(b"<!DOCTYPE html>")


def test_cmyk_image_is_a_valid_cmyk_jpeg(demo_shop_url, catalogue):
    """Bad input: a valid JPEG in CMYK, which RGB-only pipelines trip over."""
    status, headers, body = image_response(demo_shop_url, with_image_defect(catalogue, "cmyk"))
    picture = PILImage.open(io.BytesIO(body))
    picture.load()
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and picture.mode == "CMYK"


def test_png_with_alpha_is_served_as_image_png_under_a_jpg_url(demo_shop_url, catalogue):
    """Bad input: an RGBA PNG with transparent corners behind a .jpg URL (Content-Type says image/png)."""
    image = with_image_defect(catalogue, "png_alpha")
    status, headers, body = image_response(demo_shop_url, image)
    picture = PILImage.open(io.BytesIO(body))
    assert ".jpg?" in image_url(demo_shop_url, image)
    assert status == 200 and headers["Content-Type"] == "image/png" and (picture.format, picture.mode) == ("PNG", "RGBA")
    assert picture.getpixel((0, 0))[3] == 0


def test_missing_image_is_404(demo_shop_url, catalogue):
    """Bad input: an image URL listed on the product page that answers 404."""
    assert image_response(demo_shop_url, with_image_defect(catalogue, "missing"))[0] == 404


def test_huge_image_exceeds_the_decompression_bomb_limit_in_few_bytes(demo_shop_url, catalogue):
    """Bad input: a valid 14000 x 14000 JPEG that Pillow refuses to open as a decompression bomb."""
    status, headers, body = image_response(demo_shop_url, with_image_defect(catalogue, "huge"))
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and len(body) < 1_000_000
    assert HUGE_SIZE[0] * HUGE_SIZE[1] > 2 * PILImage.MAX_IMAGE_PIXELS
    with pytest.raises(PILImage.DecompressionBombError):
        PILImage.open(io.BytesIO(body))
    # The same hand-written encoder at a small size decodes to one flat grey: the format is valid.
    small = PILImage.open(io.BytesIO(flat_grey_jpeg(70, 45)))
    small.load()
    assert small.size == (70, 45) and small.getextrema() == (128, 128)


# --- truth ----------------------------------------------------------------------------------------------

def test_truth_csv_matches_the_product_pages(demo_shop_url, catalogue, tmp_path):
    status, _, body = fetch(f"{demo_shop_url}/_demo/truth.csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert status == 200 and len(rows) == sum(len(p.images) for p in catalogue.products)
    assert {row["truth"] for row in rows} == {"worn", "not_worn"}
    by_item: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_item[row["item_id"]].append(row)
        assert (row["is_packshot"] == "True") == ("filter=packshot" in row["image_url"])
    for product in catalogue.products[::9]:
        if product.page_defect in ("no_jsonld", "broken_jsonld", "truncated"):
            continue
        [data] = ld_products(page(demo_shop_url + product.path))
        assert data["image"] == [row["image_url"] for row in by_item[product.sku]]
    write_truth_csv(tmp_path / "truth.csv", demo_shop_url, seed=42)
    assert (tmp_path / "truth.csv").read_text(encoding="utf-8") == body.decode() == truth_csv(catalogue, demo_shop_url)


def test_every_defect_is_listed_in_the_truth(catalogue):
    rows = list(csv.DictReader(io.StringIO(truth_csv(catalogue, "http://shop"))))
    assert {row["defect"] for row in rows} - {""} == {"truncated", "empty", "html", "cmyk", "png_alpha", "missing", "huge"}
    assert {row["page_defect"] for row in rows} - {""} == {"no_jsonld", "missing_price", "truncated", "broken_jsonld"}
    assert {"levis", "jack-jones", "bjorn-borg"} == {row["brand_path"] for row in rows if row["defect"] or row["page_defect"]}


# --- the command ----------------------------------------------------------------------------------------

def test_background_start_is_idempotent_and_stop_ends_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        assert server.main(["--background", "--port", str(port)]) == 0
        pid = (tmp_path / f"demo-shop-{port}.pid").read_text()
        assert fetch(f"{url}/robots.txt")[0] == 200
        assert server.main(["--background", "--port", str(port)]) == 0
        assert (tmp_path / f"demo-shop-{port}.pid").read_text() == pid
        assert capsys.readouterr().out.splitlines() == [url, url]
    finally:
        assert server.main(["--stop", "--port", str(port)]) == 0
    assert not (tmp_path / f"demo-shop-{port}.pid").exists()
    assert server.probe(url) is None


def test_background_refuses_a_port_busy_with_something_else(tmp_path, monkeypatch, capsys):
    """Bad input: the port is held by a listener that is not the demo shop."""
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert server.main(["--background", "--port", str(port)]) == 1
    assert "busy" in capsys.readouterr().err
    assert not (tmp_path / f"demo-shop-{port}.pid").exists()
