"""A shop that answers like Zalando's markup but lies on purpose, on 127.0.0.1 (a free port), for the crawl tests.

Same shapes as the demo shop (docs/shop-markup.md): a brand index in a list, listings with `<article>` cards, product
pages with JSON-LD and the visible header (brand link, h1, price, colour, gallery, a recommendation card). What is
hostile is the content:

    /brands/          12 brands whose slugs collide: Levi's /levis/, LEVIS /LEVIS/, levi-s /levi-s/, Levi’s /levi's/,
                      Björn Borg /björn-borg/, bjorn-borg /bjorn-borg/, Jack & Jones /jack-jones/, Jack&Jones
                      /jack--jones/, ★ /★/ (no slug character at all), Gone Brand, Closed Label, Hostile Products
    /brands-later/    the same index a day later: Gone Brand and Closed Label no longer listed
    /gone-brand/      404;  /closed-label/  410
    /hostile/         a listing of HOSTILE_PAGES: two JSON-LD Products, JSON-LD nested 100k deep, javascript:/data:/
                      ftp: image URLs, offers in two currencies, 1e308 / Infinity / NaN / negative prices, an image
                      shared by two products
    every other brand one listing with one product of its own (its brand link is the brand's path)

Products are in HOSTILE_PAGES (path -> case) and `brand_product_path(path)`; `expected` there says what the crawler
should make of each page. The server counts requests per path (`hits`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler
from urllib.parse import quote, unquote, urlsplit

from fic_assets_tests.loopback import LoopbackServer

# (display name, shop path): the brand index, in page order.
BRANDS: tuple[tuple[str, str], ...] = (
    ("Levi's", "levis"),
    ("LEVIS", "LEVIS"),
    ("levi-s", "levi-s"),
    ("Levi\u2019s", "levi's"),
    ("Björn Borg", "björn-borg"),
    ("bjorn-borg", "bjorn-borg"),
    ("Jack & Jones", "jack-jones"),
    ("Jack&Jones", "jack--jones"),
    ("\u2605", "\u2605"),
    ("Gone Brand", "gone-brand"),
    ("Closed Label", "closed-label"),
    ("Hostile Products", "hostile"),
)
GONE = {"gone-brand": 404, "closed-label": 410}
LATER_INDEX_LEAVES_OUT = ("gone-brand", "closed-label")
HOSTILE = "hostile"
DEPTH = 100_000


def brand_sku(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8")).hexdigest()[:9].upper() + "-K11"


def brand_product_path(path: str) -> str:
    """The one product of an ordinary brand: `/jeans-<sku>.html`."""
    return f"/jeans-{brand_sku(path).lower()}.html"


def brand_product_name(name: str) -> str:
    return f"{name} 501 Jeans"


@dataclass(frozen=True)
class Case:
    """One hostile product page: the bad input and what the crawler should make of it."""

    name: str              # the h1
    json_ld: tuple = ()    # ld+json script bodies (str: raw text, else json.dumps'ed)
    price_html: str = "<span>39,95 €</span> <span>inkl. MwSt.</span>"
    gallery: tuple[str, ...] = ("own.jpg",)   # image names (or absolute/odd URLs) in the visible gallery
    has_h1: bool = True
    canonical: bool = False
    expected: dict = field(default_factory=dict)  # the item's fields, or {"dropped": reason}


def _product(name: str, **extra) -> dict:
    return {"@context": "https://schema.org", "@type": "Product", "name": name, "brand": {"@type": "Brand", "name": "Hostile Products"}, **extra}


def _offer(price, currency: str = "EUR") -> dict:
    return {"@type": "Offer", "price": price, "priceCurrency": currency}


RECOMMENDATION = {"@context": "https://schema.org", "@type": "Product", "name": "Recommended Sneaker", "sku": "OT1000001-K11",
                  "brand": {"@type": "Brand", "name": "Other Brand"}, "offers": _offer("9.99"), "image": ["IMG/rec.jpg"]}
DEEP_JSON_LD = '{"@type": "Product", "name": "Deep", "x": ' + "[" * DEPTH + "]" * DEPTH + "}"

# path -> Case. Image names starting with IMG/ become {shop}/img/<name>?imwidth=1800.
HOSTILE_PAGES: dict[str, Case] = {
    "/hostile-two-products-ho1000001-k11.html": Case(
        "Two Products Jacket",
        json_ld=([RECOMMENDATION, _product("Two Products Jacket", offers=_offer("79.95"), image=["IMG/jacket.jpg"])],),
        expected={"name": "Two Products Jacket", "brand": "Hostile Products", "price": 79.95, "currency": "EUR", "images": ["jacket.jpg"]},
    ),
    "/hostile-canonical-ho1000015-k11.html": Case(
        "Canonical Parka - Winterjacke",
        json_ld=(RECOMMENDATION, _product("Parka", url="CANONICAL", offers=_offer("149.00"), image=["IMG/parka.jpg"])),
        canonical=True,
        expected={"name": "Parka", "price": 149.0, "currency": "EUR", "images": ["parka.jpg"]},
    ),
    "/hostile-ambiguous-ho1000002-k11.html": Case(
        "Ambiguous Coat",
        json_ld=([RECOMMENDATION, dict(RECOMMENDATION, name="Recommended Boot", sku="OT1000002-K11")],),
        expected={"dropped": "ambiguous_product"},
    ),
    "/hostile-deep-json-ld-ho1000003-k11.html": Case(
        "Deep JSON-LD Shirt",
        json_ld=(DEEP_JSON_LD,),
        price_html="<span>19,95 €</span>",
        expected={"name": "Deep JSON-LD Shirt", "price": 19.95, "currency": "EUR", "images": ["own.jpg"]},
    ),
    "/hostile-deep-json-ld-only-ho1000004-k11.html": Case(
        "", json_ld=(DEEP_JSON_LD,), has_h1=False, gallery=(), expected={"dropped": "no_product"},
    ),
    "/hostile-image-schemes-ho1000005-k11.html": Case(
        "Image Schemes Dress",
        json_ld=(_product("Image Schemes Dress", offers=_offer("49.95"), image=[
            "javascript:alert(document.cookie)", "JaVaScRiPt:alert(1)", "data:image/jpeg;base64,/9j/4AAQSkZJRg==",
            "ftp://files.example.test/dress.jpg", "IMG/dress.jpg"]),),
        expected={"name": "Image Schemes Dress", "images": ["dress.jpg"]},
    ),
    "/hostile-image-schemes-only-ho1000006-k11.html": Case(
        "Only Bad Images Top",
        json_ld=(_product("Only Bad Images Top", offers=_offer("9.95"), image=["javascript:alert(1)", "ftp://files.example.test/top.jpg"]),),
        gallery=("javascript:alert(2)", "data:image/gif;base64,R0lGODlhAQABAAAAACw="),
        expected={"dropped": "no_images"},
    ),
    "/hostile-currencies-ho1000007-k11.html": Case(
        "Two Currencies Sweater",
        json_ld=(_product("Two Currencies Sweater", offers=[_offer("25.00", "GBP"), _offer("30.00", "EUR")], image=["IMG/sweater.jpg"]),),
        price_html="<span>30,00 €</span>",
        expected={"price": 30.0, "currency": "EUR"},
    ),
    "/hostile-currencies-no-page-price-ho1000008-k11.html": Case(
        "Two Currencies Cardigan",
        json_ld=(_product("Two Currencies Cardigan", offers=[_offer("25.00", "GBP"), _offer("30.00", "EUR")], image=["IMG/cardigan.jpg"]),),
        price_html="",
        expected={"price": None, "currency": None},
    ),
    "/hostile-price-1e308-ho1000009-k11.html": Case(
        "Price 1e308 Scarf",
        json_ld=('{"@type": "Product", "name": "Price 1e308 Scarf", "brand": "Hostile Products", "image": ["IMG/scarf.jpg"],'
                 ' "offers": {"price": 1e308, "priceCurrency": "EUR"}}',),
        price_html="<span>1e308 €</span>",
        expected={"price": None, "currency": None},
    ),
    "/hostile-price-infinity-ho1000010-k11.html": Case(
        "Price Infinity Hat",
        json_ld=('{"@type": "Product", "name": "Price Infinity Hat", "brand": "Hostile Products", "image": ["IMG/hat.jpg"],'
                 ' "offers": [{"price": Infinity, "priceCurrency": "EUR"}, {"price": "inf", "priceCurrency": "EUR"}]}',),
        price_html="",
        expected={"price": None, "currency": None},
    ),
    "/hostile-price-nan-ho1000011-k11.html": Case(
        "Price NaN Belt",
        json_ld=('{"@type": "Product", "name": "Price NaN Belt", "brand": "Hostile Products", "image": ["IMG/belt.jpg"],'
                 ' "offers": [{"price": NaN, "priceCurrency": "EUR"}, {"price": "nan", "priceCurrency": "EUR"}]}',),
        price_html="",
        expected={"price": None, "currency": None},
    ),
    "/hostile-price-negative-ho1000012-k11.html": Case(
        "Price Negative Socks",
        json_ld=(_product("Price Negative Socks", offers=[_offer("-5.00"), _offer(-12)], image=["IMG/socks.jpg"]),),
        price_html="",
        expected={"price": None, "currency": None},
    ),
    "/hostile-shared-image-a-ho1000013-k11.html": Case(
        "Shared Image Shirt A",
        json_ld=(_product("Shared Image Shirt A", offers=_offer("29.95"), image=["IMG/shared.jpg", "IMG/shirt-a.jpg"]),),
        expected={"images": ["shared.jpg", "shirt-a.jpg"]},
    ),
    "/hostile-shared-image-b-ho1000014-k11.html": Case(
        "Shared Image Shirt B",
        json_ld=(_product("Shared Image Shirt B", offers=_offer("29.95"), image=["IMG/shirt-b.jpg", "IMG/shared.jpg"]),),
        expected={"images": ["shirt-b.jpg", "shared.jpg"]},
    ),
}


def image_url(base: str, name: str) -> str:
    return f"{base}/img/{name}?imwidth=1800"


def _resolve(value, base: str, canonical: str):
    """IMG/<name> -> the shop's image URL, CANONICAL -> the page's canonical URL, recursively."""
    if isinstance(value, str):
        if value.startswith("IMG/"):
            return image_url(base, value[4:])
        return canonical if value == "CANONICAL" else value
    if isinstance(value, list):
        return [_resolve(entry, base, canonical) for entry in value]
    if isinstance(value, dict):
        return {key: _resolve(entry, base, canonical) for key, entry in value.items()}
    return value


def product_html(base: str, path: str, brand: str, brand_path: str, case: Case) -> str:
    canonical_url = f"{base}{path}"
    scripts = "".join(
        '<script type="application/ld+json">'
        + (script.replace('"IMG/', f'"{base}/img/') if isinstance(script, str) else json.dumps(_resolve(script, base, canonical_url)))
        + "</script>"
        for script in case.json_ld
    )
    link = f'<link rel="canonical" href="{escape(canonical_url)}">' if case.canonical else ""
    gallery = "".join(
        f'<li><img src="{escape(image_url(base, name) if "." in name and ":" not in name else name)}" '
        f'alt="{escape(brand)} {escape(case.name)} - blau"></li>'
        for name in case.gallery
    )
    heading = f'<h1 class="x3"><span>{escape(case.name)}</span></h1>' if case.has_h1 else ""
    header = (
        f'<div class="h"><a class="x1" href="/{quote(brand_path, safe="")}/"><h3 class="x2">{escape(brand)}</h3></a>{heading}'
        f'<p>{case.price_html}</p><p><span>Farbe:</span> <span>blau</span></p></div>'
        if case.has_h1 else '<div id="app"></div>'
    )
    return f"""<!DOCTYPE html><html lang="de-DE"><head><title>{escape(case.name or "x")}</title>{link}{scripts}</head><body>
<header><nav><a href="/cart/">Warenkorb</a></nav></header>
<ul class="g">{gallery}</ul>
{header}
<section><h2>Das könnte dir auch gefallen</h2>
<article><a href="/recommended-sneaker-ot1000001-k11.html"><img src="{image_url(base, "rec.jpg")}"
 alt="Other Brand Recommended Sneaker"><h3>Other Brand</h3><p><span>9,99 €</span></p></a></article></section>
</body></html>"""


def listing_html(title: str, product_paths: list[str]) -> str:
    cards = "".join(f'<article><a href="{escape(path)}"><img src="/img/card.jpg" alt="{escape(title)}"></a></article>' for path in product_paths)
    return f'<!DOCTYPE html><html lang="de-DE"><head><title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{cards}</body></html>'


def index_html(brands: list[tuple[str, str]]) -> str:
    items = "".join(f'<li><a href="/{quote(path, safe="")}/">{escape(name)}</a></li>' for name, path in brands)
    return (f'<!DOCTYPE html><html lang="de-DE"><head><title>Marken</title></head><body><header><nav><a href="/women/">Damen</a>'
            f'</nav></header><ul>{items}</ul></body></html>')


class HostileShop(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1"):
        super().__init__(_Handler, "hostile-shop", host)
        self.hits: Counter = Counter()

    def page(self, path: str) -> tuple[int, str]:
        """(status, HTML) for an unquoted path."""
        names = dict((p, n) for n, p in BRANDS)
        if path == "/robots.txt":
            return 200, "User-agent: *\nDisallow: /cart/\n"
        if path == "/brands/":
            return 200, index_html(list(BRANDS))
        if path == "/brands-later/":
            return 200, index_html([(n, p) for n, p in BRANDS if p not in LATER_INDEX_LEAVES_OUT])
        if path in HOSTILE_PAGES:
            return 200, product_html(self.url, path, "Hostile Products", HOSTILE, HOSTILE_PAGES[path])
        segments = [s for s in path.split("/") if s]
        if path.endswith("/") and len(segments) == 1 and segments[0] in names:
            brand_path = segments[0]
            if brand_path in GONE:
                return GONE[brand_path], "<html><body><h1>Diese Seite gibt es nicht</h1></body></html>"
            products = list(HOSTILE_PAGES) if brand_path == HOSTILE else [brand_product_path(brand_path)]
            return 200, listing_html(names[brand_path], products)
        for name, brand_path in BRANDS:
            if path == brand_product_path(brand_path):
                case = Case(brand_product_name(name), json_ld=({
                    "@type": "Product", "name": brand_product_name(name), "sku": brand_sku(brand_path),
                    "brand": {"@type": "Brand", "name": name}, "offers": _offer("99.95"),
                    "image": [f"IMG/{brand_sku(brand_path).lower()}.jpg"]},))
                return 200, product_html(self.url, path, name, brand_path, case)
        return 404, "<html><body><h1>Diese Seite gibt es nicht</h1></body></html>"


class _Handler(BaseHTTPRequestHandler):
    server: HostileShop

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        path = unquote(urlsplit(self.path).path)
        with self.server.lock:
            self.server.hits[path] += 1
        status, body = self.server.page(path)
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if path == "/robots.txt" else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass
