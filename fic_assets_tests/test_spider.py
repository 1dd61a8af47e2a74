"""The Scrapy project in crawler/, run for real (`python -m scrapy crawl` subprocesses) against the demo shop.

What a crawl found is compared with the demo shop's own catalogue (fic_assets.demo.shop.catalogue) and its
kept truth file (/_demo/truth.csv, which the crawler itself must not read).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fic_assets.demo.shop.catalogue import CATEGORIES, PAGE_DEFECT_PLACES, catalogue_for
from fic_assets.demo.shop.pages import PAGE_SIZE
from fic_assets_tests.conftest import require
from fic_crawler.parsing import PRODUCT_KEYS

CRAWLER_DIR = Path(__file__).resolve().parents[1] / "crawler"
CHROMIUM = os.environ.get("FIC_CHROMIUM", "/usr/bin/chromium")
CATALOGUE = catalogue_for(42)  # the seed conftest's demo_shop_url serves
BRANDS = ("levis", "jack-jones", "bjorn-borg")  # the brands with the page defects


@dataclass
class Crawl:
    items: list[dict]
    stats: dict
    log: str
    returncode: int


def scrapy(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args],
        cwd=CRAWLER_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def crawl(tmp_path: Path, shop_url: str, *args: str, spider: str = "zalando", env: dict[str, str] | None = None) -> Crawl:
    """`scrapy crawl` as the Dagster asset runs it: feed with -O, stats file via FIC_STATS_FILE."""
    feed, stats = tmp_path / f"{spider}.jsonl", tmp_path / f"{spider}.stats.json"
    result = scrapy(
        "crawl", spider, "-O", f"{feed}:jsonlines", "-s", f"FIC_STATS_FILE={stats}", *args,
        env={"FIC_SHOP_URL": shop_url, "FIC_RENDER": "none", "FIC_MAX_PAGES": "0", **(env or {})},
    )
    items = [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines()] if feed.exists() else []
    return Crawl(items, json.loads(stats.read_text(encoding="utf-8")) if stats.exists() else {}, result.stderr, result.returncode)


def listing_pages(brand: str, category: str | None = None) -> int:
    return math.ceil(len(CATALOGUE.listing(brand, category)) / PAGE_SIZE)


def truth(shop_url: str) -> dict[str, list[dict]]:
    """The demo shop's kept truth, image rows grouped by item_id in gallery order."""
    with urllib.request.urlopen(f"{shop_url}/_demo/truth.csv", timeout=10) as answer:
        rows = list(csv.DictReader(io.StringIO(answer.read().decode("utf-8"))))
    by_item: dict[str, list[dict]] = {}
    for row in rows:
        by_item.setdefault(row["item_id"], []).append(row)
    return by_item


@pytest.fixture(scope="module")
def brand_crawl(demo_shop_url: str, tmp_path_factory: pytest.TempPathFactory) -> Crawl:
    result = crawl(tmp_path_factory.mktemp("crawl"), demo_shop_url, "-a", f"brands={','.join(BRANDS)}")
    assert result.returncode == 0, result.log[-3000:]
    return result


def test_scrapy_list_shows_both_spiders():
    result = scrapy("list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["zalando", "zalando_brands"]


def test_crawl_reaches_every_listing_page_and_every_product(brand_crawl: Crawl):
    assert brand_crawl.stats["fic/pages/listing"] == sum(listing_pages(brand) for brand in BRANDS)
    expected = {p.sku for brand in BRANDS for p in CATALOGUE.listing(brand)}
    assert brand_crawl.stats["fic/pages/product"] == len(expected)
    truncated = {p.sku for p in CATALOGUE.products if p.page_defect == "truncated"}
    assert {item["item_id"] for item in brand_crawl.items} == expected - truncated
    assert len(brand_crawl.items) == len(expected) - len(truncated)  # no duplicates in the feed


def test_crawled_products_match_the_catalogue(brand_crawl: Crawl, demo_shop_url: str):
    products = {p.sku: p for p in CATALOGUE.products}
    images = truth(demo_shop_url)
    for item in brand_crawl.items:
        product = products[item["item_id"]]
        assert set(item) == {*PRODUCT_KEYS, "brand_slug", "listing_url"}
        assert (item["name"], item["brand"], item["colour"], item["sku"]) == (product.name, product.brand.name, product.colour, product.sku)
        assert item["brand_slug"] == product.brand.path
        assert item["listing_url"].startswith(f"{demo_shop_url}/{product.brand.path}/")
        assert item["url"] == demo_shop_url + product.path
        # The breadcrumb (JSON-LD, or the visible nav on the no_jsonld / broken_jsonld pages) names the category.
        assert (item["category"], item["category_path"]) == (CATEGORIES[product.category], CATEGORIES[product.category])
        if product.page_defect == "missing_price":
            assert (item["price"], item["currency"]) == (None, None)
        else:
            assert (item["price"], item["currency"]) == (float(product.price), "EUR")
        # Only the product's own images (not the 48 recommendation cards'), in gallery order, packshot flags right.
        assert [(i["url"], i["position"], i["is_packshot"]) for i in item["images"]] == [
            (row["image_url"], int(row["position"]), row["is_packshot"] == "True") for row in images[item["item_id"]]
        ]


def test_broken_pages_are_recorded_with_reasons_in_the_stats_file(brand_crawl: Crawl):
    stats = brand_crawl.stats
    assert stats["finish_reason"] == "finished"
    assert isinstance(stats["start_time"], str) and "T" in stats["start_time"]  # datetimes as ISO strings
    # Truncated in the gallery: no JSON-LD, no images -> dropped with its reason, named in the log.
    truncated = next(p for p in CATALOGUE.products if p.page_defect == "truncated")
    assert stats["fic/dropped/no_images"] == 1 and stats["item_dropped_count"] == 1
    assert f"no_images: {stats['fic/shop_url']}{truncated.path}" in brand_crawl.log
    # Missing price: kept and counted; broken / missing JSON-LD: read from the markup.
    assert stats["fic/warnings/missing_price"] == 1
    assert stats["fic/parse/invalid_json_ld"] == 1
    assert stats["fic/parse/markup_only"] == len(PAGE_DEFECT_PLACES) - 1  # all but missing_price lack a usable Product
    assert stats["item_scraped_count"] == len(brand_crawl.items)


def test_each_item_says_which_parser_path_read_it_and_the_stats_count_them(brand_crawl: Crawl):
    """Intact pages are read from their JSON-LD alone (no DOM of the ~700 KB page); the missing-price page's JSON-LD
    is completed from the markup; the pages without a usable Product (none, broken) are read from the markup."""
    by_item = {item["item_id"]: item["parsed_by"] for item in brand_crawl.items}
    defect = {p.sku: p.page_defect for p in CATALOGUE.products if p.page_defect}
    assert {sku: by_item[sku] for sku in defect if sku in by_item} == {
        sku: {"no_jsonld": "html", "broken_jsonld": "html", "missing_price": "json-ld+html"}[kind]
        for sku, kind in defect.items() if kind != "truncated"}
    assert {path for sku, path in by_item.items() if sku not in defect} == {"json-ld"}
    counted = {key.removeprefix("fic/parsed_by/"): n for key, n in brand_crawl.stats.items() if key.startswith("fic/parsed_by/")}
    # Counted per page read: the truncated page too, read from its markup, then dropped for lack of images.
    assert counted == {"json-ld": len(by_item) - 3, "json-ld+html": 1, "html": 3}
    # The visible headers agree with the JSON-LD on every demo page: no disagreement logged.
    assert not [key for key in brand_crawl.stats if key.startswith("fic/parse/json_ld_disagrees")]


def test_max_pages_limits_listing_pages(demo_shop_url: str, tmp_path: Path):
    assert listing_pages("levis") >= 3
    one = crawl(tmp_path / "arg", demo_shop_url, "-a", "brands=levis", "-a", "max_pages=1")
    assert one.returncode == 0, one.log[-3000:]
    assert one.stats["fic/pages/listing"] == 1
    assert {i["item_id"] for i in one.items} == {p.sku for p in CATALOGUE.listing("levis")[:PAGE_SIZE]}
    two = crawl(tmp_path / "env", demo_shop_url, "-a", "brands=levis", env={"FIC_MAX_PAGES": "2"})  # the default
    assert two.stats["fic/pages/listing"] == 2
    assert len(two.items) == 2 * PAGE_SIZE


def test_category_listing(demo_shop_url: str, tmp_path: Path):
    result = crawl(tmp_path, demo_shop_url, "-a", "brands=levis", "-a", "category=women-clothing")
    assert result.returncode == 0, result.log[-3000:]
    expected = CATALOGUE.listing("levis", "women-clothing")
    assert {i["item_id"] for i in result.items} == {p.sku for p in expected}
    assert result.stats["fic/pages/listing"] == listing_pages("levis", "women-clothing")
    assert all(i["listing_url"].startswith(f"{demo_shop_url}/women-clothing/levis/") for i in result.items)


def test_robots_txt_is_obeyed_and_missing_pages_are_counted(demo_shop_url: str, tmp_path: Path):
    """The demo's robots.txt disallows /_demo/: neither the brand path `_demo` nor a product under it is fetched."""
    products = f"{demo_shop_url}/_demo/x-le2aaaaaa-aaa.html,{demo_shop_url}/gone-le2aaaaaa-aab.html"
    result = crawl(tmp_path, demo_shop_url, "-a", "brands=_demo,no-such-brand", "-a", f"product_urls={products}")
    assert result.returncode == 0, result.log[-3000:]
    assert result.items == []
    assert result.stats["robotstxt/forbidden"] == 2
    assert result.stats["fic/dropped/ignored"] == 1  # the product under /_demo/
    assert result.stats["fic/dropped/http_404"] == 1  # the gone product
    # Each brand's listing outcome, for the asset to fail or mark the brand: robots.txt-forbidden, 404.
    assert (result.stats["fic/listing/demo"], result.stats["fic/listing/no-such-brand"]) == ("ignored", "http_404")
    # robots.txt, /no-such-brand/ and /gone-...html only: nothing under /_demo/ went out.
    assert result.stats["downloader/request_count"] == 3
    assert f"dropped product page {demo_shop_url}/gone-le2aaaaaa-aab.html (http_404)" in result.log


def test_brands_spider_reads_the_brand_index(demo_shop_url: str, tmp_path: Path):
    result = crawl(tmp_path, demo_shop_url, spider="zalando_brands")
    assert result.returncode == 0, result.log[-3000:]
    assert result.items == [
        {"name": brand.name, "slug": brand.path, "url": f"{demo_shop_url}/{brand.path}/", "path": brand.path}
        for brand in CATALOGUE.brands
    ]
    assert result.stats["fic/pages/brand_index"] == 1


@pytest.mark.parametrize(
    "args, message",
    [((), "no brands to crawl"), (("-a", "brands=levis", "-a", "render=chrome"), "unknown render mode 'chrome'"),
     (("-a", "brands=levis", "-a", "max_pages=-1"), "max_pages must be 0")],
    ids=["no-brands", "unknown-render-mode", "negative-max-pages"],
)
def test_bad_spider_arguments_fail_with_a_clear_message(demo_shop_url: str, tmp_path: Path, args, message):
    result = crawl(tmp_path, demo_shop_url, *args)
    assert result.returncode != 0
    assert message in result.log
    assert result.stats == {}  # no stats file: the asset reports the failure


def test_render_none_loads_neither_playwright_nor_splash(brand_crawl: Crawl):
    assert "scrapy-playwright" not in brand_crawl.log and "scrapy_splash" not in brand_crawl.log
    assert brand_crawl.stats["fic/render"] == "none"


# --- JavaScript rendering -------------------------------------------------------------------------------


@pytest.mark.browser
def test_playwright_renders_the_javascript_product_page(demo_shop_url: str, tmp_path: Path):
    require(Path(CHROMIUM).exists(), f"Debian chromium at {CHROMIUM}")
    product = CATALOGUE.listing("levis")[0]
    url = f"{demo_shop_url}/_js{product.path}"
    rendered = crawl(tmp_path / "playwright", demo_shop_url, "-a", f"product_urls={url}", env={"FIC_RENDER": "playwright", "FIC_CHROMIUM": CHROMIUM})
    assert rendered.returncode == 0, rendered.log[-3000:]
    assert [(i["item_id"], i["name"], i["brand"], i["brand_slug"], len(i["images"])) for i in rendered.items] == [
        (product.sku, product.name, product.brand.name, "levis", len(product.images))]
    assert rendered.stats["fic/render"] == "playwright" and rendered.stats["playwright/page_count"] >= 1
    # The same page without a browser holds no product: a counted drop, not an item.
    plain = crawl(tmp_path / "plain", demo_shop_url, "-a", f"product_urls={url}")
    assert plain.items == [] and plain.stats["fic/dropped/no_product"] == 1
    assert f"dropped product page {url} (no_product)" in plain.log


class FakeSplash(BaseHTTPRequestHandler):
    """Stands in for the Splash service: records each render request (server.calls), answers with the raw page."""

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        args = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.calls.append((self.path, args))  # type: ignore[attr-defined]
        with urllib.request.urlopen(args["url"], timeout=10) as page:
            body = page.read()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802: robots.txt of the Splash host
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_splash_mode_sends_pages_through_the_splash_endpoint(demo_shop_url: str, tmp_path: Path):
    """Splash runs as a Docker service elsewhere; a loopback stand-in checks what the spider sends it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSplash)
    server.calls = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        splash_url = f"http://127.0.0.1:{server.server_address[1]}"
        result = crawl(tmp_path, demo_shop_url, "-a", "brands=levis", "-a", "max_pages=1",
                       env={"FIC_RENDER": "splash", "FIC_SPLASH_URL": splash_url})
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.log[-3000:]
    assert "scrapy_splash.SplashMiddleware" in result.log and "scrapy_splash.SplashDeduplicateArgsMiddleware" in result.log
    assert len(result.items) == PAGE_SIZE
    assert {item["url"] for item in result.items} <= {demo_shop_url + p.path for p in CATALOGUE.listing("levis")}
    calls = server.calls  # type: ignore[attr-defined]
    assert {path for path, _ in calls} == {"/render.html"}
    assert all(args["wait"] == 0.5 and args["url"].startswith(demo_shop_url) for _, args in calls)
    assert len(calls) == 1 + PAGE_SIZE  # the listing page and its products, each once
    assert result.stats["splash/render.html/request_count"] == len(calls)


class BadPages(BaseHTTPRequestHandler):
    """Serves server.pages: path -> body bytes, all as `text/html; charset=utf-8` (the garbage too)."""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.server.pages.get(self.path)  # type: ignore[attr-defined]
        self.send_response(404 if body is None else 200)
        self.send_header("Content-Type", "text/plain" if self.path == "/robots.txt" else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_bad_product_pages_give_items_or_recorded_drops_and_never_crash_the_crawl(tmp_path: Path):
    """Bad input, one page each: an empty 200, 256 KB of binary garbage as text/html, a 50 MB page (JSON-LD at its
    end), HTML-escaped JSON-LD, JSON-LD whose price disagrees with the visible one, a price object."""
    import random
    from html import escape

    from fic_assets_tests.test_parsing import ld, own_product, product_page

    padding = '<script data-re-asset type="application/json">{"pad": "' + "x" * 1_000_000 + '"}</script>\n'
    pages = {
        "/robots.txt": b"User-agent: *\n",
        "/empty-le221a000-k11.html": b"",
        "/garbage-le221a000-k12.html": random.Random(16).randbytes(256 * 1024),
        "/huge-le221a000-k13.html": product_page(json_ld=ld(own_product(sku="LE221A000-K13"))).replace("<body>", "<body>" + padding * 50).encode(),
        "/escaped-le221a000-k14.html": product_page(json_ld=f'<script type="application/ld+json">{escape(json.dumps(own_product(sku="LE221A000-K14")))}</script>').encode(),
        "/disagrees-le221a000-k15.html": product_page(json_ld=ld(own_product(sku="LE221A000-K15", offers={"price": "29.95", "priceCurrency": "EUR"}))).encode(),
        "/price-object-le221a000-k16.html": product_page(json_ld=ld(own_product(sku="LE221A000-K16", offers={"price": {"value": 19.95, "currency": "EUR"}}))).encode(),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), BadPages)
    server.pages = pages  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        shop = f"http://127.0.0.1:{server.server_address[1]}"
        urls = ",".join(shop + path for path in pages if path.endswith(".html"))
        result = crawl(tmp_path, shop, "-a", f"product_urls={urls}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0 and result.stats["finish_reason"] == "finished", result.log[-3000:]
    assert not [key for key in result.stats if key.startswith("spider_exceptions")] and "Traceback" not in result.log
    items = {item["sku"]: (item["price"], item["parsed_by"], item["brand_slug"]) for item in result.items}
    assert items == {"LE221A000-K13": (39.95, "json-ld", "brand-path"), "LE221A000-K14": (39.95, "json-ld", "brand-path"),
                     "LE221A000-K15": (29.95, "json-ld", "brand-path"), "LE221A000-K16": (19.95, "json-ld", "brand-path")}
    assert result.stats["fic/dropped/no_product"] == 2  # the empty page and the garbage, named in the log
    assert f"dropped product page {shop}/empty-le221a000-k11.html (no_product): empty page" in result.log
    assert result.stats["fic/parse/json_ld_html_escaped"] == 1
    # JSON-LD wins and the disagreement is counted: the 29.95 page, and the price object's 19.95 (both show 39,95 €).
    assert result.stats["fic/parse/json_ld_disagrees/price"] == 2
    assert f"{shop}/disagrees-le221a000-k15.html: JSON-LD and markup disagree on the price: JSON-LD 29.95 (kept), markup 39.95" in result.log


def test_category_falls_back_to_the_listing_url_and_a_bad_breadcrumb_never_crashes_the_crawl(tmp_path: Path):
    """Bad input: a BreadcrumbList whose itemListElement is a string, one whose names are numbers, a page with no
    trail at all. Found on `/jeans/brand-path/` they take the listing's category; fetched alone they have none."""
    from fic_assets_tests.test_parsing import ld, own_product, product_page

    def page(sku: str, *extra: dict) -> bytes:
        return product_page(json_ld=ld(own_product(sku=sku)) + "".join(ld(block) for block in extra)).encode()

    bad_breadcrumbs = {
        "/string-le221a000-k21.html": page("LE221A000-K21", {"@type": "BreadcrumbList", "itemListElement": "Herren > Jeans"}),
        "/numbers-le221a000-k22.html": page("LE221A000-K22", {"@type": "BreadcrumbList", "itemListElement": [{"position": 1, "name": 7}]}),
        "/none-le221a000-k23.html": page("LE221A000-K23"),
    }
    good = {"/good-le221a000-k24.html": page("LE221A000-K24", {"@type": "BreadcrumbList", "itemListElement": [
        {"position": 1, "name": "Herren"}, {"position": 2, "name": "Jeans \"Straight\" ✓"}]})}
    listing = "<html><body>" + "".join(f'<article><a href="{path}">x</a></article>' for path in {**bad_breadcrumbs, **good}) + "</body></html>"
    pages = {"/robots.txt": b"User-agent: *\n", "/jeans/brand-path/": listing.encode(), **bad_breadcrumbs, **good,
             # the same products under other URLs, fetched alone (no listing): the item keeps category None
             **{path.replace("-le221a000", "-alone-le221a000").replace("k2", "k3"): body.replace(b"LE221A000-K2", b"LE221A000-K3")
                for path, body in bad_breadcrumbs.items()}}
    server = ThreadingHTTPServer(("127.0.0.1", 0), BadPages)
    server.pages = pages  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        shop = f"http://127.0.0.1:{server.server_address[1]}"
        alone = ",".join(shop + path for path in pages if "-alone-" in path)
        result = crawl(tmp_path, shop, "-a", "brands=brand-path", "-a", "category=jeans", "-a", f"product_urls={alone}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0 and result.stats["finish_reason"] == "finished", result.log[-3000:]
    assert "Traceback" not in result.log
    categories = {item["sku"]: (item["category"], item["category_path"]) for item in result.items}
    assert categories == {
        "LE221A000-K21": ("jeans", "jeans"), "LE221A000-K22": ("jeans", "jeans"), "LE221A000-K23": ("jeans", "jeans"),
        "LE221A000-K24": ("Herren", 'Herren > Jeans "Straight" ✓'),  # the page's own trail wins over the listing's
        "LE221A000-K31": (None, None), "LE221A000-K32": (None, None), "LE221A000-K33": (None, None),
    }
    assert result.stats["fic/parse/category_from_listing"] == 3
    assert result.stats["fic/parse/breadcrumb_invalid"] == 4
