"""The product page parser (fic_crawler.parsing) and `fic parse-page`.

Saved pages under data/pages/ are hand-written in the real zalando markup's shape (hashed class names,
JSON-LD in head or body, dozens of recommendation cards); pages of the demo shop are fetched from it.
Each test on bad input names the bad input.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import urllib.request
from html import escape
from pathlib import Path

import pytest

from fic_crawler.items import brand_slug
from fic_crawler.parsing import (
    PRODUCT_KEYS,
    NoProductError,
    canonical_url,
    category_from_listing,
    image_records,
    item_id_for,
    lowest_offer,
    pagination_links,
    parse_brand_index,
    parse_price_text,
    parse_product,
    product_links,
)

PAGES = Path(__file__).parent / "data" / "pages"
REPO = Path(__file__).resolve().parents[1]
LEVIS_URL = "https://www.zalando.de/levis-501-original-jeans-straight-leg-le221a000-k11.html"


def saved(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def parse_saved(name: str) -> dict:
    html = saved(name)
    return parse_product(html, canonical_url(html) or f"https://www.zalando.de/{name}")


def product_page(
    *,
    brand: str = "Levi's",
    name: str = "501 ORIGINAL - Jeans Straight Leg",
    price_html: str = "<span>39,95 €</span> <span>inkl. MwSt.</span>",
    colour: str | None = "blau",
    lang: str = "de-DE",
    json_ld: str = "",
    brand_in_h1: bool = False,
    images: tuple[str, ...] = ("/img/article/a.jpg?imwidth=1800", "/img/article/b.jpg?imwidth=1800&filter=packshot"),
) -> str:
    """A small page in the shop's shape (brand link, h1, price, colour, gallery, a recommendation card)."""
    link = f'<a class="x1" href="/brand-path/"><h3 class="x2">{escape(brand)}</h3></a>'
    heading = f'<h1 class="x3"><span>{escape(name)}</span></h1>'
    if brand_in_h1:
        heading = f'<h1 class="x3"><a href="/brand-path/">{escape(brand)}</a> <span>{escape(name)}</span></h1>'
        link = ""
    colour_html = f"<p><span>Farbe:</span> <span>{escape(colour)}</span></p>" if colour else ""
    gallery = "".join(f'<li><img src="{escape(src)}" alt="{escape(brand)} {escape(name)} - x"></li>' for src in images)
    return f"""<!DOCTYPE html><html lang="{lang}"><head><title>t</title>{json_ld}</head><body>
<ul class="g">{gallery}</ul>
<div class="h">{link}{heading}<p>{price_html}</p>{colour_html}</div>
<section><h2>Das könnte dir auch gefallen</h2>
<article><a href="/other-thing-ot121a000-k11.html"><img src="/img/article/rec.jpg?imwidth=300"
 alt="{escape(brand)} {escape(name)} - anderefarbe"><h3>{escape(brand)}</h3><p><span>9,99 €</span></p></a></article></section>
</body></html>"""


def read_alike(product: dict) -> dict:
    """The product without `parsed_by`: what two paths through the parser must agree on."""
    return {key: value for key, value in product.items() if key != "parsed_by"}


def ld(data: object) -> str:
    return f'<script type="application/ld+json">{json.dumps(data)}</script>'


# --- saved pages in the real site's shape ---------------------------------------------------------------


def test_zalando_de_page_reads_json_ld_and_ignores_recommendation_images():
    product = parse_saved("zalando_de_product.html")
    assert tuple(product) == PRODUCT_KEYS
    assert product["item_id"] == product["sku"] == "LE221A000-K11"
    assert product["name"] == "501® ORIGINAL - Jeans Straight Leg"
    assert product["brand"] == "Levi's®"
    assert (product["price"], product["currency"], product["colour"]) == (119.95, "EUR", "stonewash")
    assert product["url"] == LEVIS_URL
    assert [image["position"] for image in product["images"]] == [0, 1, 2, 3, 4]
    assert [image["is_packshot"] for image in product["images"]] == [False, False, False, True, True]
    # 54 recommendation cards (one the same model in another colour) contribute no image.
    assert all("imwidth=1800" in image["url"] for image in product["images"])


def test_same_page_without_json_ld_gives_the_same_product_from_markup():
    """No JSON-LD Product: name from the h1, brand link, price/colour after it, gallery minus thumbnails."""
    from_markup, from_json_ld = parse_saved("zalando_de_product_no_jsonld.html"), parse_saved("zalando_de_product.html")
    assert read_alike(from_markup) == read_alike(from_json_ld)
    assert (from_markup["parsed_by"], from_json_ld["parsed_by"]) == ("html", "json-ld")


def test_en_gb_page_with_pound_price_graph_and_image_objects():
    """en-GB, `@graph` with `@type` as a list, one offer as a dict, ImageObject images, no colour in JSON-LD."""
    product = parse_saved("zalando_co_uk_product.html")
    assert product["item_id"] == "JA222G0AD-K11"
    assert product["brand"] == "Jack & Jones"  # `Jack &amp; Jones` in the JSON-LD
    assert (product["price"], product["currency"]) == (39.95, "GBP")
    assert product["colour"] == "blue denim"  # filled from the "Colour:" label
    assert [image["is_packshot"] for image in product["images"]] == [False, False, True]


def test_sale_page_takes_the_current_price_not_the_struck_one():
    """No JSON-LD; `<s>1.499,00 €</s>` then `1.299,00 €` (thousands separator) then `-13 %`."""
    product = parse_saved("zalando_de_sale_no_jsonld.html")
    assert (product["price"], product["currency"]) == (1299.0, "EUR")
    assert product["colour"] == "black"  # "Farbe: black" in one span
    assert product["brand"] == "MONCLER"
    # Thumbnails repeat the gallery at imwidth=156: deduped, the 1800 variant kept, gallery order kept.
    assert len(product["images"]) == 3
    assert all("imwidth=1800" in image["url"] for image in product["images"])
    assert [image["is_packshot"] for image in product["images"]] == [False, False, True]


def test_brand_link_inside_the_h1_is_the_brand_not_part_of_the_name():
    product = parse_saved("zalando_de_brand_in_h1.html")
    assert product["brand"] == "Marc O’Polo"
    assert product["name"] == "Strickpullover"
    assert (product["price"], product["currency"], product["colour"]) == (89.95, "EUR", "navy")  # "ab 89,95 €"
    assert len(product["images"]) == 2


@pytest.mark.parametrize("name", ["zalando_de_listing_p2.html", "zalando_de_404.html", "zalando_de_marken.html"])
def test_listing_404_and_brand_index_pages_hold_no_product(name):
    with pytest.raises(NoProductError) as raised:
        parse_saved(name)
    assert isinstance(raised.value, ValueError)
    assert "no schema.org Product" in raised.value.reason


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("html", ["", "   \n", "<html></html>", "<html><body><p>nothing</p></body></html>"])
def test_empty_page_is_no_product(html):
    with pytest.raises(NoProductError):
        parse_product(html, LEVIS_URL)


def test_html_truncated_mid_tag_after_the_header_still_parses():
    html = saved("zalando_de_product_no_jsonld.html")
    cut = html[: html.index("<button", html.index("Farbe:")) + 4]  # `<but`: cut in a tag after header and gallery
    product = parse_product(cut, LEVIS_URL)
    assert (product["name"], product["brand"], product["price"], product["colour"]) == (
        "501® ORIGINAL - Jeans Straight Leg", "Levi's®", 119.95, "stonewash")
    assert len(product["images"]) == 5


def test_html_truncated_inside_the_json_ld_falls_back_to_markup():
    """The Product script is cut mid-string: invalid JSON, skipped; the markup has everything."""
    html = saved("zalando_de_product.html")
    cut = html[: html.index('"offers"') + 20]
    product = parse_product(cut, LEVIS_URL)
    whole = parse_saved("zalando_de_product.html")
    # The BreadcrumbList came after the Product script, so the cut took the category with it (the markup has no trail).
    assert (product["category"], product["category_path"]) == (None, None)
    assert read_alike({**product, "category": whole["category"], "category_path": whole["category_path"]}) == read_alike(whole)
    assert product["parsed_by"] == "html"


def test_html_truncated_before_the_h1_is_no_product():
    html = saved("zalando_de_product_no_jsonld.html")
    with pytest.raises(NoProductError):
        parse_product(html[: html.index("<h1") + 2], LEVIS_URL)


def test_one_invalid_json_ld_script_is_skipped_and_noted():
    product_ld = {"@type": "Product", "name": "KEMI", "brand": {"name": "Marc O'Polo"}, "sku": "MA322N0C5-K11",
                  "image": "/img/article/k.jpg?imwidth=1800", "offers": {"price": "129.95", "priceCurrency": "EUR"}}
    broken = '<script type="application/ld+json">{"@type": "BreadcrumbList", "itemListElement": [</script>'
    notes: list[str] = []
    html = product_page(json_ld=broken + ld(product_ld), colour=None, images=())
    product = parse_product(html, "https://shop.test/kemi-ma322n0c5-k11.html", notes)
    assert (product["name"], product["brand"], product["price"]) == ("KEMI", "Marc O'Polo", 129.95)
    assert "invalid_json_ld" in notes


def test_only_json_ld_is_invalid_json_so_markup_is_used():
    html = product_page(json_ld='<script type="application/ld+json">{"@type": "Product", "name": </script>')
    product = parse_product(html, "https://shop.test/x-le221a000-k11.html")
    assert (product["name"], product["price"], product["currency"], product["colour"]) == (
        "501 ORIGINAL - Jeans Straight Leg", 39.95, "EUR", "blau")


def test_json_ld_without_offers_and_no_visible_price_gives_price_none():
    html = product_page(json_ld=ld({"@type": "Product", "name": "X", "brand": "Levi's", "image": ["/a.jpg"]}), price_html="")
    product = parse_product(html, "https://shop.test/x-le221a000-k11.html")
    assert (product["price"], product["currency"]) == (None, None)
    assert product["name"] == "X" and product["item_id"] == "LE221A000-K11"


def test_json_ld_without_offers_takes_the_visible_price():
    html = product_page(json_ld=ld({"@type": "Product", "name": "X", "brand": "Levi's", "image": ["/a.jpg"]}))
    assert parse_product(html, "https://shop.test/x.html")["price"] == 39.95


def test_markup_page_without_price_is_still_a_product():
    product = parse_product(product_page(price_html=""), "https://shop.test/x-le221a000-k11.html")
    assert product["price"] is None and product["colour"] == "blau" and len(product["images"]) == 2


def test_javascript_only_page_is_no_product():
    """The demo's /_js/ pages without a browser: a script builds everything, the HTML holds nothing."""
    html = '<html lang="de-DE"><body><div id="app"></div><script>document.title="x"</script></body></html>'
    with pytest.raises(NoProductError, match="no <h1>"):
        parse_product(html, "https://shop.test/_js/x-le221a000-k11.html")


def test_page_without_brand_link_does_not_take_a_navigation_link_as_brand():
    html = product_page().replace('href="/brand-path/"', 'href="/brand-path/x.html"')
    html = html.replace("<body>", '<body><header><nav><a href="/cart/">Warenkorb</a></nav></header>')
    product = parse_product(html, "https://shop.test/x-le221a000-k11.html")
    assert product["brand"] is None and product["name"] == "501 ORIGINAL - Jeans Straight Leg"


def test_colour_label_outside_the_header_container():
    html = product_page(colour=None).replace("</ul>", '</ul><div><span>Farbe:</span><b>olive</b></div>', 1)
    assert parse_product(html, "https://shop.test/x.html")["colour"] == "olive"


@pytest.mark.parametrize(
    "offers, expected",
    [
        ([{"price": "119.95", "priceCurrency": "EUR"}, {"price": "99.95", "priceCurrency": "EUR"}], (99.95, "EUR")),
        ({"@type": "Offer", "price": 34.99, "priceCurrency": "gbp"}, (34.99, "GBP")),
        ({"@type": "AggregateOffer", "lowPrice": "29.95", "highPrice": "49.95", "priceCurrency": "EUR"}, (29.95, "EUR")),
        ([{"price": "n/a", "priceCurrency": "EUR"}, {"price": "", "priceCurrency": "EUR"}, {"price": "49.95", "priceCurrency": "CHF"}], (49.95, "CHF")),
        ([{"price": "0", "priceCurrency": "EUR"}, {"price": "19.99", "priceCurrency": "EUR"}], (19.99, "EUR")),
        ({"priceSpecification": {"price": "12.50", "priceCurrency": "EUR"}}, (12.5, "EUR")),
        ([{"price": None}, {"price": True}, "junk"], (None, None)),
        (None, (None, None)),
    ],
    ids=["list-lowest", "single-dict-number", "aggregate-low-price", "unparseable-skipped", "zero-placeholder",
         "price-specification", "all-garbage", "no-offers"],
)
def test_lowest_offer(offers, expected):
    assert lowest_offer(offers) == expected


@pytest.mark.parametrize(
    "data",
    [
        {"@type": "Product", "name": "A", "brand": "B"},
        [{"@type": "BreadcrumbList"}, {"@type": "Product", "name": "A", "brand": {"@type": "Brand", "name": "B"}}],
        {"@context": "https://schema.org", "@graph": [{"@type": "Organization"}, {"@type": ["Thing", "Product"], "name": "A", "brand": "B"}]},
        {"@type": "WebPage", "mainEntity": {"@type": "http://schema.org/Product", "name": "A", "brand": ["B"]}},
    ],
    ids=["object", "list", "graph-with-type-list", "main-entity-with-type-url"],
)
def test_json_ld_shapes(data):
    product = parse_product(product_page(json_ld=ld(data)), "https://shop.test/a-le221a000-k11.html")
    assert (product["name"], product["brand"]) == ("A", "B")


def test_json_ld_with_several_products_picks_the_one_of_the_url():
    other = {"@type": "Product", "name": "Other", "brand": "B", "sku": "OT121A000-K11"}
    own = {"@type": "Product", "name": "Own", "brand": "B", "sku": "le221a000-k11"}
    product = parse_product(product_page(json_ld=ld([other, own])), "https://shop.test/own-le221a000-k11.html")
    assert (product["name"], product["sku"]) == ("Own", "LE221A000-K11")


def test_item_id_is_a_url_hash_without_sku():
    """No SKU in JSON-LD or URL: sha1 of the URL without query/fragment, 16 hex characters."""
    html = product_page(json_ld=ld({"@type": "Product", "name": "A", "brand": "B"}))
    first = parse_product(html, "https://shop.test/some-product.html?utm=1#top")
    second = parse_product(html, "https://shop.test/some-product.html")
    assert first["item_id"] == second["item_id"] == item_id_for(None, "https://shop.test/some-product.html")
    assert len(first["item_id"]) == 16 and int(first["item_id"], 16) >= 0
    assert first["sku"] is None


def test_sku_from_url_when_json_ld_has_none():
    html = product_page(json_ld=ld({"@type": "Product", "name": "A", "brand": "B"}))
    assert parse_product(html, "https://shop.test/a-le221a000-k11.html")["sku"] == "LE221A000-K11"


def test_image_forms_and_relative_urls():
    images = ["/img/a.jpg?imwidth=1800", {"@type": "ImageObject", "contentUrl": "https://cdn.test/b.jpg?imwidth=1800&filter=packshot"},
              {"url": "c.jpg"}, "/img/a.jpg?imwidth=600"]
    html = product_page(json_ld=ld({"@type": "Product", "name": "A", "brand": "B", "image": images}))
    product = parse_product(html, "https://shop.test/dir/a.html")
    assert product["images"] == [
        {"url": "https://shop.test/img/a.jpg?imwidth=1800", "position": 0, "is_packshot": False},
        {"url": "https://cdn.test/b.jpg?imwidth=1800&filter=packshot", "position": 1, "is_packshot": True},
        {"url": "https://shop.test/dir/c.jpg", "position": 2, "is_packshot": False},
    ]


def test_image_dedupe_keeps_first_position_and_widest_variant():
    records = image_records(["/a.jpg?imwidth=156", "/b.jpg?imwidth=1800", "/a.jpg?imwidth=1800&filter=packshot", "/a.jpg?imwidth=1800"])
    assert [r["url"] for r in records] == ["/a.jpg?imwidth=1800", "/b.jpg?imwidth=1800", "/a.jpg?imwidth=1800&filter=packshot"]
    records = image_records(["/a.jpg?imwidth=156", "/b.jpg", "/a.jpg?imwidth=1800"])
    assert [r["url"] for r in records] == ["/a.jpg?imwidth=1800", "/b.jpg"]


@pytest.mark.parametrize("brand", ["Levi's", "Marc O’Polo", "Ève & Söhne", "Selected Femme/Homme", "Björn Borg", "Tommy <Hilfiger>"])
@pytest.mark.parametrize("brand_in_h1", [False, True], ids=["link-before-h1", "link-in-h1"])
def test_brand_names_with_apostrophe_unicode_ampersand_slash_from_markup(brand, brand_in_h1):
    product = parse_product(product_page(brand=brand, brand_in_h1=brand_in_h1), "https://shop.test/x-le221a000-k11.html")
    assert product["brand"] == brand
    assert product["name"] == "501 ORIGINAL - Jeans Straight Leg"
    assert len(product["images"]) == 2  # gallery alt "{brand} {name}" matched, the card's image not


@pytest.mark.parametrize("encoded, expected", [("Levi&#39;s", "Levi's"), ("Jack &amp; Jones", "Jack & Jones"),
                                               ("\u00c8ve &amp; S\u00f6hne", "Ève & Söhne"), ("Selected Femme/Homme", "Selected Femme/Homme")])
def test_brand_names_entity_encoded_in_json_ld(encoded, expected):
    html = product_page(json_ld=ld({"@type": "Product", "name": "A", "brand": {"@type": "Brand", "name": encoded}}))
    assert parse_product(html, "https://shop.test/a.html")["brand"] == expected


@pytest.mark.parametrize("path, slug", [("levis", "levis"), ("/marc-o-polo/", "marc-o-polo"), ("Selected Femme/Homme", "selected-femme-homme"),
                                        ("h%C3%BCftgold", "huftgold"), ("ève-söhne", "eve-sohne"), ("Jack & Jones", "jack-jones")])
def test_brand_slug_is_only_lowercase_ascii_digits_and_dashes(path, slug):
    assert brand_slug(path) == slug


@pytest.mark.parametrize(
    "text, language, expected",
    [
        ("39,95 €", "de-de", (39.95, "EUR")),
        ("£39.95", "en-gb", (39.95, "GBP")),
        ("1.299,00 €", "de-de", (1299.0, "EUR")),
        ("ab 89,95 €", "de-de", (89.95, "EUR")),
        ("CHF 1'299.00", "de-ch", (1299.0, "CHF")),
        ("1 299,00 zł", "pl-pl", (1299.0, "PLN")),
        ("349 kr", "sv-se", (349.0, "SEK")),
        ("49,95 EUR", "fr-fr", (49.95, "EUR")),
        ("-10,00 €", "de-de", None),
        ("inkl. MwSt.", "de-de", None),
        ("3 Farben", "de-de", None),
        ("-13 %", "de-de", None),
    ],
)
def test_visible_prices_per_locale(text, language, expected):
    assert parse_price_text(text, language) == expected


# --- brand index and listings ---------------------------------------------------------------------------


def test_brand_index_lists_brands_not_navigation():
    brands = parse_brand_index(saved("zalando_de_marken.html"), "https://www.zalando.de/marken/")
    assert [b["path"] for b in brands] == ["levis", "marc-o-polo", "jack-jones", "bjoern-borg", "vero-moda-curve", "s-oliver", "hüftgold"]
    assert brands[0] == {"name": "Levi's®", "path": "levis", "url": "https://www.zalando.de/levis/"}
    assert brands[4]["name"] == "Vero Moda / Curve" and brands[1]["name"] == "Marc O'Polo"


def test_listing_product_and_pagination_links():
    html = saved("zalando_de_listing_p2.html")
    url = "https://www.zalando.de/levis/?p=2"
    links = product_links(html, url)
    assert len(links) == 24 and len(set(links)) == 24
    assert all(link.startswith("https://www.zalando.de/") and link.endswith(".html") for link in links)
    assert pagination_links(html, url) == ["https://www.zalando.de/levis/?p=3"]
    assert pagination_links(html, "https://www.zalando.de/levis/") == ["https://www.zalando.de/levis/?p=2", "https://www.zalando.de/levis/?p=3"]


# --- pages of the demo shop ----------------------------------------------------------------------------


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode("utf-8")


def demo_sample():
    """Products covering every page defect, JSON-LD shape, brand-in-h1 variant, sale and brand name."""
    from fic_assets.demo.shop.catalogue import catalogue_for

    chosen: dict[str, object] = {}
    for product in catalogue_for(42).products:
        for key in (("defect", product.page_defect), ("shape", product.jsonld_shape), ("h1", product.brand_in_h1),
                    ("sale", product.old_price is not None), ("brand", product.brand.path)):
            chosen.setdefault(repr(key), product)
    return list({product.sku: product for product in chosen.values()}.values())


def expected_from_catalogue(product, base_url: str) -> dict:
    from fic_assets.demo.shop.catalogue import CATEGORIES, image_url

    priced = product.page_defect != "missing_price"
    images = [] if product.page_defect == "truncated" else [
        {"url": image_url(base_url, image), "position": image.position, "is_packshot": image.is_packshot} for image in product.images]
    return {
        "item_id": product.sku, "sku": product.sku, "name": product.name, "brand": product.brand.name,
        "price": float(product.price) if priced else None, "currency": "EUR" if priced else None,
        "colour": product.colour, "url": base_url + product.path, "images": images,
        # Without a usable Product the markup answers; without offers the JSON-LD is completed from it.
        "parsed_by": {"no_jsonld": "html", "broken_jsonld": "html", "truncated": "html", "missing_price": "json-ld+html"}.get(
            product.page_defect or "", "json-ld"),
        # The trail Startseite > category > brand > product: home, brand and product left out. Pages without a usable
        # JSON-LD BreadcrumbList (no_jsonld) read the same from the visible breadcrumb <nav>.
        "category": CATEGORIES[product.category], "category_path": CATEGORIES[product.category],
    }


def without_json_ld(html: str) -> str:
    return re.sub(r'<script type="application/ld\+json">.*?</script>', "", html, flags=re.S)


def test_demo_shop_product_pages_match_the_catalogue(demo_shop_url):
    """Every page defect (no / broken JSON-LD, missing price, truncated), shape and variant of the demo shop."""
    sample = demo_sample()
    assert {p.page_defect for p in sample} >= {"no_jsonld", "broken_jsonld", "missing_price", "truncated"}
    for product in sample:
        url = demo_shop_url + product.path
        html = fetch(url)
        expected = expected_from_catalogue(product, demo_shop_url)
        assert parse_product(html, url) == expected, product
        # The markup alone says the same (the fallback is not just for the defect pages).
        assert parse_product(without_json_ld(html), url) == {**expected, "parsed_by": "html"}, product


def test_demo_shop_javascript_page_without_browser_is_no_product(demo_shop_url):
    from fic_assets.demo.shop.catalogue import catalogue_for

    product = catalogue_for(42).products[0]
    with pytest.raises(NoProductError):
        parse_product(fetch(f"{demo_shop_url}/_js{product.path}"), f"{demo_shop_url}/_js{product.path}")


def test_demo_shop_listing_and_brand_index(demo_shop_url):
    from fic_assets.demo.shop.catalogue import catalogue_for

    catalogue = catalogue_for(42)
    listing = fetch(f"{demo_shop_url}/levis/")
    assert product_links(listing, f"{demo_shop_url}/levis/") == [demo_shop_url + p.path for p in catalogue.listing("levis")[:24]]
    assert pagination_links(listing, f"{demo_shop_url}/levis/")[0] == f"{demo_shop_url}/levis/?p=2"
    with pytest.raises(NoProductError):
        parse_product(listing, f"{demo_shop_url}/levis/")
    brands = parse_brand_index(fetch(f"{demo_shop_url}/brands/"), f"{demo_shop_url}/brands/")
    assert [(b["name"], b["path"]) for b in brands] == [(b.name, b.path) for b in catalogue.brands]


# --- fic parse-page -------------------------------------------------------------------------------------


def fic(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fic_assets.cli", "parse-page", *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_fic_parse_page_prints_one_json_object_per_page():
    result = fic(str(PAGES / "zalando_de_product.html"), str(PAGES / "zalando_co_uk_product.html"))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [tuple(line) for line in lines] == [PRODUCT_KEYS, PRODUCT_KEYS]
    assert lines[0]["url"] == LEVIS_URL  # the page's <link rel=canonical>
    assert lines[1]["price"] == 39.95 and lines[1]["currency"] == "GBP"
    # Which path read each page: the first's JSON-LD alone, the second's (no colour in it) completed from the markup.
    assert [line["parsed_by"] for line in lines] == ["json-ld", "json-ld+html"]
    assert f"{PAGES / 'zalando_de_product.html'}: read by json-ld" in result.stderr


def test_fic_parse_page_url_option_and_file_uri_default(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(product_page(), encoding="utf-8")
    with_url = json.loads(fic(str(page), "--url", "https://shop.test/x-le221a000-k11.html").stdout)
    assert with_url["url"] == "https://shop.test/x-le221a000-k11.html" and with_url["item_id"] == "LE221A000-K11"
    without = json.loads(fic(str(page)).stdout)
    assert without["url"] == page.resolve().as_uri()


def test_fic_parse_page_no_product_page_exits_2_and_names_the_file():
    """A 404 page among good ones: the good ones are still printed."""
    bad = PAGES / "zalando_de_404.html"
    result = fic(str(PAGES / "zalando_de_product.html"), str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "no product" in result.stderr
    assert [json.loads(line)["item_id"] for line in result.stdout.splitlines()] == ["LE221A000-K11"]


def test_fic_parse_page_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.html"
    empty.write_bytes(b"")
    result = fic(str(empty))
    assert result.returncode == 2 and "empty file" in result.stderr and str(empty) in result.stderr
    missing = tmp_path / "missing.html"
    result = fic(str(missing))
    assert result.returncode == 1 and "cannot read" in result.stderr and str(missing) in result.stderr
    assert result.stdout == ""


def test_fic_parse_page_reads_latin1_page_by_its_meta_charset(tmp_path):
    page = tmp_path / "latin1.html"
    html = product_page(brand="Björn Borg").replace("<head>", '<head><meta charset="iso-8859-1">')
    page.write_bytes(html.encode("iso-8859-1", errors="replace"))
    result = fic(str(page))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["brand"] == "Björn Borg"


# --- bad input on the JSON-LD path (issue 16): each gives the right item or a NoProductError with its kind ----

OWN_SKU_URL = "https://shop.test/own-le221a000-k11.html"


def own_product(**extra) -> dict:
    return {"@context": "https://schema.org", "@type": "Product", "name": "501 ORIGINAL - Jeans Straight Leg", "sku": "LE221A000-K11",
            "brand": {"@type": "Brand", "name": "Levi's"}, "color": "blau", "image": ["/img/article/a.jpg?imwidth=1800"],
            "offers": [{"@type": "Offer", "price": "39.95", "priceCurrency": "EUR"}], **extra}


def parsed(html: str, url: str = OWN_SKU_URL) -> tuple[dict, list[str]]:
    notes: list[str] = []
    return parse_product(html, url, notes), notes


def test_intact_json_ld_is_read_without_building_a_dom():
    product, notes = parsed(product_page(json_ld=ld(own_product())))
    assert (product["name"], product["brand"], product["price"], product["colour"]) == ("501 ORIGINAL - Jeans Straight Leg", "Levi's", 39.95, "blau")
    assert product["parsed_by"] == "json-ld" and notes == []


def test_binary_garbage_is_no_product():
    """Bad input: 64 KB of random bytes served as a page (decoded with replacement characters, NUL bytes kept)."""
    import random

    garbage = random.Random(16).randbytes(65536).decode("utf-8", errors="replace")
    assert "\x00" in garbage
    with pytest.raises(NoProductError) as raised:
        parse_product(garbage, OWN_SKU_URL)
    assert raised.value.kind == "no_product"


def test_50_mb_page_reads_its_json_ld_and_without_one_is_too_large_for_a_dom():
    """Bad input: a 50 MB page (hydration state padding the body). Its JSON-LD Product is read by the text scan;
    the same page without JSON-LD is dropped as `page_too_large` instead of building a DOM of 50 MB."""
    state = '<script data-re-asset type="application/json">{"pad": "' + "x" * 1_000_000 + '"}</script>\n'
    body = product_page().replace("<body>", "<body>" + state * 50)
    assert len(body) > 50_000_000
    product, _ = parsed(body.replace("</body>", ld(own_product()) + "</body>"))
    assert (product["name"], product["price"], product["parsed_by"]) == ("501 ORIGINAL - Jeans Straight Leg", 39.95, "json-ld")
    with pytest.raises(NoProductError) as raised:
        parse_product(body, OWN_SKU_URL)
    assert raised.value.kind == "page_too_large" and "too large for a DOM" in raised.value.reason


@pytest.mark.parametrize("price", [{"@type": "PriceSpecification", "price": "39.95", "priceCurrency": "EUR"},
                                   {"value": 39.95, "currency": "EUR"}], ids=["price-specification", "value-currency"])
def test_json_ld_price_object_instead_of_a_string(price):
    """Bad input: `offers.price` is an object, not a string."""
    product, _ = parsed(product_page(json_ld=ld(own_product(offers={"@type": "Offer", "price": price}))))
    assert (product["price"], product["currency"], product["parsed_by"]) == (39.95, "EUR", "json-ld")


@pytest.mark.parametrize("image", ["/img/article/a.jpg?imwidth=1800", ["/img/article/a.jpg?imwidth=1800"]], ids=["string", "list"])
def test_json_ld_image_as_a_string_or_a_list(image):
    """Bad input: `image` as a bare string instead of a list (both are schema.org)."""
    product, _ = parsed(product_page(json_ld=ld(own_product(image=image))))
    assert [i["url"] for i in product["images"]] == ["https://shop.test/img/article/a.jpg?imwidth=1800"]
    assert product["parsed_by"] == "json-ld"


def test_json_ld_graph_wrapper_on_the_text_path():
    """Bad input: the Product inside an `@graph` beside Organization and BreadcrumbList."""
    graph = {"@context": "https://schema.org", "@graph": [{"@type": "Organization", "name": "Shop"},
                                                         {"@type": "BreadcrumbList"}, own_product()]}
    product, _ = parsed(product_page(json_ld=ld(graph)))
    assert (product["sku"], product["price"], product["parsed_by"]) == ("LE221A000-K11", 39.95, "json-ld")


def test_two_product_blocks_pick_the_one_with_the_urls_sku():
    """Bad input: two separate Product scripts, a recommendation first; the one with the URL's SKU is the page's."""
    other = own_product(name="Other Jeans", sku="OT121A000-K11", offers={"price": "9.99", "priceCurrency": "EUR"})
    product, _ = parsed(product_page(json_ld=ld(other) + ld(own_product())))
    assert (product["name"], product["price"], product["parsed_by"]) == ("501 ORIGINAL - Jeans Straight Leg", 39.95, "json-ld")


def test_html_escaped_json_ld_is_read_unescaped_and_noted():
    """Bad input: the JSON-LD's quotes written as `&quot;` (a template escaped it twice)."""
    product, notes = parsed(product_page(json_ld=f'<script type="application/ld+json">{escape(json.dumps(own_product()))}</script>'))
    assert (product["name"], product["brand"], product["price"], product["parsed_by"]) == (
        "501 ORIGINAL - Jeans Straight Leg", "Levi's", 39.95, "json-ld")
    assert "json_ld_html_escaped" in notes


def test_json_ld_disagreeing_with_the_markup_wins_and_the_disagreement_is_logged(caplog):
    """Bad input: the JSON-LD says 29.95 and "Jeans Slim", the visible header 39,95 € and another name."""
    html = product_page(json_ld=ld(own_product(name="Jeans Slim", offers={"price": "29.95", "priceCurrency": "EUR"})))
    with caplog.at_level(logging.WARNING, logger="fic_crawler.parsing"):
        product, notes = parsed(html)
    assert (product["name"], product["price"], product["parsed_by"]) == ("Jeans Slim", 29.95, "json-ld")
    assert {"json_ld_disagrees/name", "json_ld_disagrees/price"} <= set(notes) and "json_ld_disagrees/colour" not in notes
    assert "disagree on the price: JSON-LD 29.95 (kept), markup 39.95" in caplog.text


def test_ld_json_quoted_inside_other_scripts_or_commented_out_is_not_read():
    """Bad input: hydration state quoting a Product ld+json script, and a commented-out one: the browser runs
    neither, so the page has no JSON-LD Product and is read from its markup."""
    quoted = '<script type="application/json">{"html": "<script type=\\"application/ld+json\\">{}"}</script>'
    hydration = f'<script data-re-asset type="application/json">["<script type=application/ld+json>{json.dumps(own_product(name="Wrong"))}"]</script>'
    commented = f"<!-- {ld(own_product(name='Commented'))} -->"
    product, notes = parsed(product_page(json_ld=quoted + hydration + commented))
    assert (product["name"], product["parsed_by"]) == ("501 ORIGINAL - Jeans Straight Leg", "html") and "markup_only" in notes


# --- the header cross-check's cheap text reading against its DOM reading ----------------------------------

HEADER_CASES = {
    "plain": product_page(),
    "brand link in the h1": product_page(brand_in_h1=True),
    "sale: struck old price": product_page(price_html="<s>59,95 €</s> <span>39,95 €</span>"),
    "sale: line-through old price": product_page(price_html='<span style="text-decoration: line-through">59,95 €</span> <span>39,95 €</span>'),
    "two unmarked prices": product_page(price_html="<span>59,95 €</span> <span>39,95 €</span>"),
    "entities and a > in an attribute": product_page(name="Jeans & Co", price_html='<span title="a>b">39,95&nbsp;€</span>'),
    "no colour": product_page(colour=None),
    "en-GB price": product_page(lang="en-GB", price_html="<span>£39.95</span>"),
}


def header_dom_disagreements(fragment: str, url: str, language: str, values: tuple) -> set[str]:
    """What the DOM check (`Markup` of the fragment, as before the text check existed) finds different."""
    from lxml import etree

    from fic_crawler.parsing import FRAGMENT_PARSER, Markup, fold

    header = Markup(etree.fromstring(f'<html lang="{language}"><body>{fragment}</body></html>'.encode(), FRAGMENT_PARSER), url)
    shown_price, _, shown_colour = header.details
    found = set()
    for field, stated, shown in zip(("name", "price", "colour"), values, (header.name, shown_price, shown_colour)):
        if stated is not None and shown is not None and (
                abs(stated - shown) >= 0.005 if field == "price" else fold(str(stated)) != fold(str(shown))):
            found.add(field)
    return found


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
@pytest.mark.parametrize("stated", [
    ("501 ORIGINAL - Jeans Straight Leg", 39.95, "blau"),
    ("Jeans Slim", 39.95, "blau"),  # bad input: another product's name in the JSON-LD
    ("501 ORIGINAL - Jeans Straight Leg", 29.95, "blau"),  # bad input: a stale JSON-LD price
    ("501 ORIGINAL - Jeans Straight Leg", 39.95, "schwarz"),  # bad input: another colour
    ("501 ORIGINAL - Jeans Straight Leg", 59.95, None),  # bad input: the old price as the JSON-LD price
])
def test_header_text_check_says_agree_only_where_the_dom_check_finds_no_disagreement(case, stated):
    """The cheap text reading of the header may send a page to the DOM check for nothing, never let a
    disagreement the DOM check would log pass; and on the shop's common shapes it decides alone."""
    from fic_crawler.parsing import Page, _header_text_agrees

    html = HEADER_CASES[case]
    if case == "entities and a > in an attribute":
        stated = ("Jeans & Co",) + stated[1:] if stated[0].startswith("501") else stated
    url = "https://www.zalando.de/levis-501-original-jeans-straight-leg-le221a000-k11.html"
    page = Page(html, url)
    fragment = page.header_fragment
    agrees = _header_text_agrees(fragment, url, page.language, *stated)
    disagreements = header_dom_disagreements(fragment, url, page.language, stated)
    if agrees:
        assert not disagreements
    expected_alone = case != "two unmarked prices" and stated[1] != 59.95
    if not disagreements and expected_alone:
        assert agrees, "a common header shape went to the DOM check"


@pytest.mark.parametrize("name", ["zalando_de_product.html", "zalando_co_uk_product.html", "zalando_de_brand_in_h1.html"])
def test_saved_real_shape_pages_cross_check_by_text_as_by_dom(name):
    """The saved real-shape pages: the text check agrees where the DOM check does, and the item is the same."""
    from fic_crawler.parsing import Page, _header_text_agrees

    html = saved(name)
    url = canonical_url(html) or f"https://www.zalando.de/{name}"
    notes: list[str] = []
    product = parse_product(html, url, notes)
    page = Page(html, url)
    stated = (product["name"], product["price"], product["colour"])
    assert header_dom_disagreements(page.header_fragment, url, page.language, stated) == set()
    assert _header_text_agrees(page.header_fragment, url, page.language, *stated)
    assert not [note for note in notes if note.startswith("json_ld_disagrees")]


# --- category: the breadcrumb trail ---------------------------------------------------------------------


def test_saved_pages_read_the_category_from_the_json_ld_breadcrumb_without_the_brand():
    """Real-shape trail `Herren > Jeans > Levi's®` (no home, no product crumb): the brand crumb is left out."""
    product = parse_saved("zalando_de_product.html")
    assert (product["category"], product["category_path"], product["parsed_by"]) == ("Herren", "Herren > Jeans", "json-ld")
    assert (parse_saved("zalando_de_brand_in_h1.html")["category"], parse_saved("zalando_de_brand_in_h1.html")["category_path"]) == ("Herren", "Herren")
    # A page without any breadcrumb (JSON-LD or visible) has no category, not a guess.
    assert (parse_saved("zalando_co_uk_product.html")["category"], parse_saved("zalando_co_uk_product.html")["category_path"]) == (None, None)


def breadcrumb(*elements: object, **extra: object) -> dict:
    return {"@context": "https://schema.org", "@type": "BreadcrumbList", "itemListElement": list(elements), **extra}


def crumb(position: object, name: object, url: object = None) -> dict:
    element = {"@type": "ListItem", "position": position, "name": name}
    if url is not None:
        element["item"] = url
    return element


BREADCRUMB_NAV = (
    '<nav class="q1 w2" aria-label="Breadcrumb"><ol><li><a href="/">Startseite</a></li>'
    '<li><a href="/damen-home/">Damen</a></li><li><a href="/damen-schuhe/">Schuhe</a></li>'
    '<li><a href="/brand-path/">Levi&#39;s</a></li>'
    '<li><span aria-current="page">501 ORIGINAL - Jeans Straight Leg</span></li></ol></nav>'
)


def with_nav(html: str, nav: str = BREADCRUMB_NAV) -> str:
    return html.replace("<body>", "<body>" + nav, 1)


def test_json_ld_trail_leaves_out_home_brand_and_product_and_sorts_by_position():
    trail = breadcrumb(crumb(3, "Jeans", "/herren-jeans/"), crumb(1, "Startseite", "https://shop.test/"),
                       crumb(4, "Levi’s", "/brand-path/"), crumb(2, "Herren", "/herren-home/"),
                       crumb(5, "501 ORIGINAL - Jeans Straight Leg", OWN_SKU_URL))
    product, notes = parsed(product_page(json_ld=ld(own_product()) + ld(trail)))
    assert (product["category"], product["category_path"]) == ("Herren", "Herren > Jeans")
    assert product["parsed_by"] == "json-ld" and notes == []  # read from the decoded JSON-LD: no DOM built


def test_breadcrumb_of_a_webpage_node_and_in_a_graph():
    page = {"@context": "https://schema.org", "@graph": [
        own_product(), {"@type": "WebPage", "breadcrumb": breadcrumb(crumb(1, "Herren", {"@id": "/herren-home/", "name": "x"}))}]}
    product, _ = parsed(product_page(json_ld=ld(page)))
    assert (product["category"], product["category_path"]) == ("Herren", "Herren")  # the ListItem's own name first


@pytest.mark.parametrize(
    ("bad_input", "trail"),
    [
        ("itemListElement missing", {"@type": "BreadcrumbList"}),
        ("itemListElement a string", {"@type": "BreadcrumbList", "itemListElement": "Herren > Jeans"}),
        ("itemListElement a number", {"@type": "BreadcrumbList", "itemListElement": 3}),
        ("itemListElement empty", breadcrumb()),
        ("an element that is a string", breadcrumb("Herren", crumb(2, "Jeans"))),
        ("a name that is a number", breadcrumb(crumb(1, 42), crumb(2, "Jeans"))),
        ("a name that is a list", breadcrumb(crumb(1, ["Herren"]), crumb(2, "Jeans"))),
        ("a name that is null, no item", breadcrumb(crumb(1, None), crumb(2, "Jeans"))),
        ("an item object whose name is an object", breadcrumb({"position": 1, "item": {"@id": "/h/", "name": {"de": "Herren"}}})),
        ("a name of blanks only", breadcrumb(crumb(1, "  \n "), crumb(2, "Jeans"))),
    ],
)
def test_unreadable_breadcrumb_list_gives_no_category_and_is_noted(bad_input, trail):
    """A trail with a hole would file the piece under the wrong level: no category at all, and the item is kept."""
    product, notes = parsed(product_page(json_ld=ld(own_product()) + ld(trail)))
    assert (product["category"], product["category_path"]) == (None, None), bad_input
    assert product["name"] == "501 ORIGINAL - Jeans Straight Leg" and "breadcrumb_invalid" in notes


@pytest.mark.parametrize(
    ("bad_input", "trail", "expected"),
    [
        ("unicode, quotes and an entity in the names",
         breadcrumb(crumb(1, 'Damen "Sale" \u2019s'), crumb(2, "Schuhe &amp; Stiefel"), crumb(3, "Ĺódź Ünïcødé 👟")),
         ('Damen "Sale" \u2019s', 'Damen "Sale" \u2019s > Schuhe & Stiefel > Ĺódź Ünïcødé 👟')),
        ("positions that are not numbers (document order kept)",
         breadcrumb(crumb(True, "Herren"), crumb({"n": 2}, "Jeans")), ("Herren", "Herren > Jeans")),
        ("positions as digit strings", breadcrumb(crumb("2", "Jeans"), crumb("1", "Herren")), ("Herren", "Herren > Jeans")),
        ("itemListElement one object instead of a list", {"@type": "BreadcrumbList", "itemListElement": crumb(1, "Herren")}, ("Herren", "Herren")),
        ("an item URL that is a number", breadcrumb(crumb(1, "Herren", 7)), ("Herren", "Herren")),
        ("only home and the brand", breadcrumb(crumb(1, "Startseite", "/"), crumb(2, "LEVI'S", "/brand-path/")), (None, None)),
    ],
)
def test_odd_but_readable_breadcrumb_lists(bad_input, trail, expected):
    product, notes = parsed(product_page(json_ld=ld(own_product()) + ld(trail)))
    assert (product["category"], product["category_path"]) == expected, bad_input
    assert "breadcrumb_invalid" not in notes


def test_visible_breadcrumb_nav_answers_without_a_dom_when_the_json_ld_has_no_breadcrumb_list():
    product, notes = parsed(with_nav(product_page(json_ld=ld(own_product()))))
    assert (product["category"], product["category_path"]) == ("Damen", "Damen > Schuhe")
    # The nav is read as a fragment: the page's DOM is still not built.
    assert product["parsed_by"] == "json-ld" and notes == ["category_from_markup"]
    # The markup alone (no JSON-LD at all, a DOM built) reads the same trail; so does a page whose BreadcrumbList is bad.
    html_only, _ = parsed(with_nav(product_page()))
    assert (html_only["category_path"], html_only["parsed_by"]) == ("Damen > Schuhe", "html")
    bad, notes = parsed(with_nav(product_page(json_ld=ld(own_product()) + ld(breadcrumb("Herren")))))
    assert bad["category_path"] == "Damen > Schuhe" and notes == ["breadcrumb_invalid", "category_from_markup"]


@pytest.mark.parametrize(
    ("bad_input", "nav"),
    [
        ("a breadcrumb nav never closed", '<nav aria-label="breadcrumb"><ol><li><a href="/h/">Herren</a></li>'),
        ("a breadcrumb nav quoted in a script's text", '<script>var t = \'<nav aria-label="breadcrumb"><a href="/h/">Herren</a></nav>\';</script>'),
        ("a breadcrumb nav without entries", '<nav aria-label="breadcrumb"><ol><li> </li></ol></nav>'),
        ("a nav that is not a breadcrumb", '<nav aria-label="main"><a href="/herren-home/">Herren</a></nav>'),
    ],
)
def test_no_visible_breadcrumb_gives_no_category(bad_input, nav):
    product, _ = parsed(with_nav(product_page(json_ld=ld(own_product())), nav))
    assert (product["category"], product["category_path"]) == (None, None), bad_input


@pytest.mark.parametrize(
    ("listing_url", "expected"),
    [
        ("https://shop.test/women-clothing/levis/", "women-clothing"),
        ("https://shop.test/damen%20sale/levis/?p=2", "damen sale"),
        ("https://shop.test/levis/", None),  # a brand listing names no category
        ("https://shop.test/a/b/c/", None),
        (None, None),
    ],
)
def test_category_from_the_listing_url(listing_url, expected):
    assert category_from_listing(listing_url) == expected


def test_breadcrumb_nav_is_found_by_its_aria_label_not_its_class():
    """Bad input: a menu <nav> whose (hashed) class happens to contain "breadcrumb", before the real trail."""
    decoy = '<nav class="breadcrumb-xY1" aria-label="main"><a href="/herren-home/">Herren</a></nav>'
    product, notes = parsed(with_nav(product_page(json_ld=ld(own_product())), decoy + BREADCRUMB_NAV))
    assert (product["category"], product["category_path"]) == ("Damen", "Damen > Schuhe") and product["parsed_by"] == "json-ld"
