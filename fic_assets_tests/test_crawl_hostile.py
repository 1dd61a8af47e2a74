"""Crawls of a hostile shop (fic_assets_tests/hostile_shop.py) with the real components: the shop over HTTP, Scrapy
subprocesses, DuckDB files and Dagster materializations on an ephemeral instance.

Each test names the bad input it tries (issue 12, crawl half). Scrapy runs at most once per test: the module
fixtures read the brand index once and crawl every brand of it once, and several tests read that one outcome.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb as duckdb_lib
import pytest

from fic_assets.platform import warehouse
from fic_assets.defs.crawl.assets import brand_catalogue, brand_rows, brands
from fic_assets.defs.crawl.jobs import crawl_job
from fic_assets.defs.shared import brand_partitions
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets.defs.crawl.crawler import CrawlerResource
from fic_assets_tests.conftest import free_port
from fic_assets_tests.hostile_shop import BRANDS, GONE, HOSTILE_PAGES, HostileShop, brand_sku
from fic_crawler.items import path_hash
from fic_crawler.parsing import sku_from_url

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
ITEM = {case.name: sku_from_url(path) for path, case in HOSTILE_PAGES.items()}  # h1 -> the page's item id


@dataclass
class Platform:
    shop: HostileShop
    instance: dg.DagsterInstance
    duckdb: DuckDBResource
    root: Path

    def resources(self, **crawler: object) -> dict:
        return {"duckdb": self.duckdb, "crawler": CrawlerResource(shop_url=self.shop.url, **crawler)}

    def crawl(self, slugs: list[str], shop_url: str | None = None) -> dg.ExecuteInProcessResult:
        resources = {"duckdb": self.duckdb, "crawler": CrawlerResource(shop_url=shop_url or self.shop.url)}
        defs = dg.Definitions(assets=[brands, brand_catalogue], jobs=[crawl_job], resources=resources)
        return defs.resolve_job_def("crawl_job").execute_in_process(
            instance=self.instance, tags=dict(zip(RANGE, (slugs[0], slugs[-1]))), raise_on_error=False)

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.duckdb.connect(read_only=True) as con:
            return con.execute(sql, params or []).fetchall()


def metadata(result: dg.ExecuteInProcessResult, asset: str, partition: str | None = None) -> dict:
    """One materialization's metadata: of `partition`, or the run's first (a brand partition's own counts, and the
    whole run's under `run`)."""
    node = "brand_catalogue" if asset in ("pieces", "image_urls") else asset
    event = next(m for m in result.asset_materializations_for_node(node)
                 if m.asset_key.to_user_string() == asset and partition in (None, m.partition))
    return {key: value.value for key, value in event.metadata.items()}


def run_metadata(result: dg.ExecuteInProcessResult) -> dict:
    """What the crawl run did as a whole, as every brand partition of it records it."""
    return metadata(result, "pieces")["run"]


def failure(result: dg.ExecuteInProcessResult) -> tuple[str, dict]:
    (event,) = result.get_step_failure_events()
    user = event.step_failure_data.user_failure_data
    return user.description, {key: value.value for key, value in user.metadata.items()}


def warnings(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id) if entry.level == logging.WARNING]


def stored_brands(platform: Platform) -> dict[str, dict]:
    rows = platform.rows("SELECT path, slug, name, last_crawled, delisted_at, gone_at, listing_status FROM brands")
    return {row[0]: dict(zip(("path", "slug", "name", "last_crawled", "delisted_at", "gone_at", "listing_status"), row)) for row in rows}


@pytest.fixture(scope="module")
def shop():
    with HostileShop() as shop:
        yield shop


@pytest.fixture(scope="module")
def platform(shop, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("FIC_DATA_DIR", str(root))  # crawl feeds and logs
        yield Platform(shop, instance, DuckDBResource(path=str(root / "fic.duckdb")), root)


@pytest.fixture(scope="module")
def discovered(platform) -> dg.ExecuteInProcessResult:
    """`brands` materialized once from the hostile index (one Scrapy run)."""
    result = dg.materialize([brands], instance=platform.instance, resources=platform.resources())
    assert result.success
    return result


@pytest.fixture(scope="module")
def crawled(platform, discovered) -> tuple[dg.ExecuteInProcessResult, dict]:
    """Every brand of the index crawled in one run (one Scrapy run): the answering ones, then the two gone ones."""
    keys = {path: slug for path, slug in platform.rows("SELECT path, slug FROM brands")}
    order = [keys[path] for _, path in BRANDS if path not in GONE] + [keys[path] for path in sorted(GONE)]
    platform.instance.add_dynamic_partitions(brand_partitions.name, order)
    result = platform.crawl(order)
    assert result.success, result.get_step_failure_events()
    stats = json.loads(next(platform.root.glob(f"crawls/{result.run_id}/pieces/zalando.stats.json")).read_text())
    return result, stats


def piece(platform: Platform, name: str) -> dict | None:
    rows = platform.rows("SELECT item_id, name, brand, brand_slug, price, currency FROM pieces WHERE item_id = ?", [ITEM[name]])
    return dict(zip(("item_id", "name", "brand", "brand_slug", "price", "currency"), rows[0])) if rows else None


def images_of(platform: Platform, name: str) -> list[str]:
    rows = platform.rows("SELECT image_url FROM piece_images WHERE item_id = ? ORDER BY position", [ITEM[name]])
    return [row[0].rsplit("/", 1)[-1].split("?")[0] for row in rows]


# --- 3. brand identity: colliding slugs ------------------------------------------------------------------


def test_brand_index_with_levis_LEVIS_levi_s_and_bjorn_borg_twice_keeps_all_12_with_distinct_keys(platform, discovered):
    """Bad input: a brand index with `Levi's` /levis/, `LEVIS` /LEVIS/, `levi-s` /levi-s/, `Levi’s` /levi's/, `Björn Borg`
    /björn-borg/ beside `bjorn-borg`, `Jack&Jones` /jack--jones/ beside /jack-jones/ and `★` (no slug character).
    Every brand is kept under its own path; a colliding slug gets a stable suffix (sha1 of the path), with a warning
    in the run's metadata and log."""
    stored = stored_brands(platform)
    assert set(stored) == {path for _, path in BRANDS} and len(stored) == 12
    assert len({row["slug"] for row in stored.values()}) == 12
    assert {path: row["slug"] for path, row in stored.items()} == {
        "levis": "levis", "LEVIS": f"levis-{path_hash('LEVIS')}", "levi-s": "levi-s", "levi's": "levi-s-" + path_hash("levi's"),
        "bjorn-borg": "bjorn-borg", "björn-borg": f"bjorn-borg-{path_hash('björn-borg')}", "jack-jones": "jack-jones",
        "jack--jones": f"jack-jones-{path_hash('jack--jones')}", "★": f"brand-{path_hash('★')}",
        "gone-brand": "gone-brand", "closed-label": "closed-label", "hostile": "hostile",
    }
    assert stored["björn-borg"]["name"] == "Björn Borg" and stored["levi's"]["name"] == "Levi\u2019s"
    meta = metadata(discovered, "brands")
    assert meta["brands"] == 12
    assert {(c["path"], c["collides_with"]) for c in meta["slug_collisions"]} == {
        ("LEVIS", "levis"), ("levi's", "levi-s"), ("björn-borg", "bjorn-borg"), ("jack--jones", "jack-jones"), ("★", None)}
    logged = warnings(platform.instance, discovered.run_id)
    assert any("'LEVIS' at /LEVIS/ shares its slug with /levis/" in message for message in logged), logged


def test_colliding_brand_keys_are_stable_whatever_the_index_order_and_what_duckdb_already_holds():
    """Bad input: the same colliding index in reverse order, and an old database in which /levi's/ came first and took
    `levi-s`. Keys never move once given out; a later path with the same slug gets the suffix (no scrapy: the
    asset's own brand_rows)."""
    items = [{"name": name, "path": path, "url": f"http://shop/{path}/"} for name, path in BRANDS]
    forward, _ = brand_rows(items)
    backward, _ = brand_rows(list(reversed(items)))
    assert {row["path"]: row["slug"] for row in forward} == {row["path"]: row["slug"] for row in backward}
    rows, suffixed = brand_rows(items, known={"levi's": "levi-s"})
    keys = {row["path"]: row["slug"] for row in rows}
    assert keys["levi's"] == "levi-s" and keys["levi-s"] == f"levi-s-{path_hash('levi-s')}"
    assert {"path": "levi-s", "name": "levi-s", "slug": keys["levi-s"], "collides_with": "levi's"} in suffixed


def test_colliding_brands_are_crawled_under_their_own_partition_keys(platform, crawled):
    """Bad input: /levis/, /LEVIS/, /levi-s/ and /levi's/ crawled in one run: each brand's product is stored under the
    brand's own partition key, none under another brand's."""
    result, _ = crawled
    keys = {path: slug for path, slug in platform.rows("SELECT path, slug FROM brands")}
    stored = dict(platform.rows("SELECT item_id, brand_slug FROM pieces"))
    for name, path in BRANDS:
        if path not in GONE and path != "hostile":
            assert stored[brand_sku(path)] == keys[path], (name, path)
    assert run_metadata(result)["brands_without_pieces"] == []
    assert platform.instance.get_materialized_partitions(dg.AssetKey("pieces")) >= {keys["LEVIS"], keys["levi's"], keys["★"]}


# --- 2. a crawl that reached nothing -------------------------------------------------------------------


def test_listings_answering_404_and_410_in_a_multi_brand_run_mark_those_brands_gone(platform, crawled):
    """Bad input: /gone-brand/ answers 404 and /closed-label/ 410 in a run that crawls ten other brands: the run
    succeeds for the others, the two are marked gone in `brands` (gone_at, listing_status) and in the run's metadata,
    and their last_crawled does not move."""
    result, _ = crawled
    stored = stored_brands(platform)
    for path, status in GONE.items():
        row = stored[path]
        assert (row["listing_status"], row["last_crawled"]) == (f"http_{status}", None)
        assert row["gone_at"] is not None and row["delisted_at"] is None
    answered = [row for path, row in stored.items() if path not in GONE]
    assert all(row["listing_status"] == "ok" and row["last_crawled"] and row["gone_at"] is None for row in answered)
    meta = run_metadata(result)
    assert meta["gone_brands"] == ["closed-label", "gone-brand"] and meta["failed_brands"] == {}
    assert meta["listing_status"] == {"ok": 10, "http_404": 1, "http_410": 1}
    assert metadata(result, "pieces", "gone-brand")["listing_status"] == "http_404"  # each partition its own
    assert any("gone (404/410)" in message for message in warnings(platform.instance, result.run_id))


def test_single_brand_whose_listing_answers_404_fails_the_partition(shop, tmp_path, monkeypatch):
    """Bad input: a brand partition whose listing now answers 404 (the only brand of the run): the run fails, saying
    so, the brand is marked gone, last_crawled stays as it was and `pieces` is not materialized."""
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    earlier = warehouse.utcnow() - timedelta(days=7)
    with dg.instance_for_test() as instance:
        platform = Platform(shop, instance, DuckDBResource(path=str(tmp_path / "fic.duckdb")), tmp_path)
        with platform.duckdb.connect() as con:
            warehouse.upsert_brands(con, [{"slug": "gone-brand", "name": "Gone Brand", "url": f"{shop.url}/gone-brand/"}])
            warehouse.record_listing_status(con, {"gone-brand": "ok"}, earlier)
        instance.add_dynamic_partitions(brand_partitions.name, ["gone-brand"])
        result = platform.crawl(["gone-brand"])
        assert not result.success
        description, meta = failure(result)
        assert "gone-brand (http_404)" in description
        assert meta["listing_status"] == {"http_404": 1} and meta["gone_brands"] == ["gone-brand"]
        assert instance.get_materialized_partitions(dg.AssetKey("pieces")) == set()
        (row,) = stored_brands(platform).values()
    assert row["last_crawled"] == earlier and row["gone_at"] is not None and row["listing_status"] == "http_404"


def test_shop_url_at_a_closed_port_fails_the_partition_and_last_crawled_stays(tmp_path, monkeypatch):
    """Bad input: FIC_SHOP_URL at a closed port (Scrapy: `Connection was refused`, zero pages fetched): the run fails,
    naming the brand, the reason and the zero pages; no piece, last_crawled unchanged, the status recorded."""
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    down = f"http://127.0.0.1:{free_port()}"
    earlier = warehouse.utcnow() - timedelta(days=7)
    with dg.instance_for_test() as instance:
        platform = Platform(None, instance, DuckDBResource(path=str(tmp_path / "fic.duckdb")), tmp_path)  # type: ignore[arg-type]
        with platform.duckdb.connect() as con:
            warehouse.upsert_brands(con, [{"slug": "levis", "name": "Levi's", "url": f"{down}/levis/"}])
            warehouse.record_listing_status(con, {"levis": "ok"}, earlier)
        instance.add_dynamic_partitions(brand_partitions.name, ["levis"])
        result = platform.crawl(["levis"], shop_url=down)
        assert not result.success
        description, meta = failure(result)
        assert "levis (download_error)" in description and "pages fetched: 0" in description and down in description
        assert meta["failed_brands"] == {"levis": "download_error"} and meta["pages"] == 0
        row = platform.rows("SELECT last_crawled, listing_status, gone_at FROM brands")[0]
        assert row == (earlier, "download_error", None)
        assert platform.rows("SELECT count(*) FROM pieces") == [(0,)]


def test_brands_missing_from_a_later_brand_index_are_marked_delisted_not_deleted(platform, discovered, tmp_path, monkeypatch):
    """Bad input: the next day's brand index (/brands-later/) no longer lists Gone Brand and Closed Label: both rows stay,
    with delisted_at set, and the run's metadata and log name them."""
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    shutil.copyfile(platform.root / "fic.duckdb", tmp_path / "fic.duckdb")  # the module's file stays as it was
    later = Platform(platform.shop, platform.instance, DuckDBResource(path=str(tmp_path / "fic.duckdb")), tmp_path)
    result = dg.materialize([brands], instance=platform.instance, resources=later.resources(brand_index_path="/brands-later/"))
    assert result.success
    stored = stored_brands(later)
    assert len(stored) == 12
    assert {path for path, row in stored.items() if row["delisted_at"] is not None} == {"gone-brand", "closed-label"}
    assert metadata(result, "brands")["delisted_brands"] == ["closed-label", "gone-brand"]
    assert any("marked delisted" in message for message in warnings(platform.instance, result.run_id))
    # Listed again later: the mark is cleared (upsert of the brand as the full index would give it).
    with later.duckdb.connect() as con:
        warehouse.upsert_brands(con, [{"slug": "gone-brand", "name": "Gone Brand", "url": f"{platform.shop.url}/gone-brand/"}])
    assert stored_brands(later)["gone-brand"]["delisted_at"] is None


# --- 4. several JSON-LD Products --------------------------------------------------------------------------


def test_two_json_ld_products_first_a_recommendation_stores_the_pages_own_product(platform, crawled):
    """Bad input: two JSON-LD Product blocks, the first a recommendation (another SKU, name, brand, price), the page's
    own without any SKU: the one named like the <h1> is stored under the page's item id."""
    assert piece(platform, "Two Products Jacket") == {
        "item_id": "HO1000001-K11", "name": "Two Products Jacket", "brand": "Hostile Products", "brand_slug": "hostile",
        "price": 79.95, "currency": "EUR"}
    assert images_of(platform, "Two Products Jacket") == ["jacket.jpg"]


def test_two_json_ld_products_neither_named_like_the_h1_pick_the_one_with_the_canonical_url(platform, crawled):
    """Bad input: two Product blocks, neither with the page's SKU nor the <h1>'s name; the page's own carries the
    page's canonical URL."""
    stored = piece(platform, "Canonical Parka - Winterjacke")
    assert (stored["name"], stored["price"]) == ("Parka", 149.0)


def test_two_json_ld_products_none_matching_the_page_is_dropped_with_its_reason(platform, crawled):
    """Bad input: two Product blocks, both recommendations (other SKUs, names, no URL): not guessed, dropped and
    counted as `ambiguous_product`, the log naming the page and why."""
    result, stats = crawled
    assert piece(platform, "Ambiguous Coat") is None
    assert metadata(result, "pieces", "hostile")["dropped_by_reason"]["ambiguous_product"] == 1
    log = Path(metadata(result, "pieces")["crawl_log"]).read_text(encoding="utf-8")
    assert "hostile-ambiguous-ho1000002-k11.html (ambiguous_product): 2 schema.org Products" in log


# --- 6. smaller ones --------------------------------------------------------------------------------------


def test_json_ld_nested_100k_deep_is_a_recorded_skip_or_drop_not_a_recursion_error(platform, crawled):
    """Bad input: an ld+json script nested 100 000 levels deep, once beside a complete visible product and once alone.
    The script is skipped and counted (`json_ld_too_deep`); the first page is read from its markup, the second is a
    counted `no_product` drop whose reason names the skipped script. No spider exception, no traceback."""
    result, stats = crawled
    assert stats["fic/parse/json_ld_too_deep"] == 2
    assert not [key for key in stats if key.startswith("spider_exceptions")]
    stored = piece(platform, "Deep JSON-LD Shirt")
    assert (stored["name"], stored["price"], stored["currency"]) == ("Deep JSON-LD Shirt", 19.95, "EUR")
    log = Path(metadata(result, "pieces")["crawl_log"]).read_text(encoding="utf-8")
    assert "RecursionError" not in log and "Traceback" not in log
    assert "deep-json-ld-only-ho1000004-k11.html (no_product)" in log and "skipped unread: json_ld_too_deep" in log


def test_javascript_data_and_ftp_image_urls_from_json_ld_never_reach_the_feed(platform, crawled):
    """Bad input: JSON-LD images `javascript:alert(document.cookie)`, `JaVaScRiPt:alert(1)`, `data:image/jpeg;base64,...`,
    `ftp://...` beside one https image; and a page with nothing else (its gallery `javascript:` / `data:` too).
    Each bad URL is dropped and counted by scheme; the page left without images is a counted `no_images` drop."""
    result, stats = crawled
    feed = Path(metadata(result, "pieces")["crawl_log"]).with_name("zalando.jsonl").read_text(encoding="utf-8")
    urls = [image["url"] for line in feed.splitlines() for image in json.loads(line)["images"]]
    assert urls and all(url.startswith(platform.shop.url + "/img/") for url in urls)
    stored = [row[0] for row in platform.rows("SELECT image_url FROM images UNION ALL SELECT image_url FROM piece_images")]
    assert all(url.startswith("http://") for url in stored)
    assert images_of(platform, "Image Schemes Dress") == ["dress.jpg"]
    notes = run_metadata(result)["parse_notes"]
    assert notes["image_dropped/scheme_javascript"] == 4 and notes["image_dropped/scheme_ftp"] == 2
    assert notes["image_dropped/scheme_data"] == 1  # the gallery's data: image is left out before (never a gallery image)
    assert piece(platform, "Only Bad Images Top") is None and stats["fic/dropped/no_images"] == 1


def test_offers_in_gbp_and_eur_take_the_pages_currency_not_the_lower_number(platform, crawled):
    """Bad input: offers of 25.00 GBP and 30.00 EUR on a page showing `30,00 €`: 30 EUR, not 25 (GBP is not cheaper
    by number); the currency is stored with the price."""
    stored = piece(platform, "Two Currencies Sweater")
    assert (stored["price"], stored["currency"]) == (30.0, "EUR")
    assert platform.rows("SELECT price, currency FROM price_history WHERE item_id = ?", [stored["item_id"]]) == [(30.0, "EUR")]


def test_offers_in_two_currencies_on_a_page_showing_no_price_store_no_price(platform, crawled):
    """Bad input: the same two offers on a page without a visible price: no price rather than a guess, counted as
    `ambiguous_currency`; the product itself is stored."""
    result, _ = crawled
    stored = piece(platform, "Two Currencies Cardigan")
    assert (stored["price"], stored["currency"]) == (None, None)
    assert run_metadata(result)["parse_notes"]["ambiguous_currency"] == 1


def test_prices_1e308_infinity_nan_and_negative_are_rejected(platform, crawled):
    """Bad input: JSON-LD prices 1e308 (and `1e308 €` shown on the page), Infinity, "inf", NaN, "nan", "-5.00", -12:
    none is stored; the products are kept without price and each rejected amount is counted (`price_rejected`)."""
    result, _ = crawled
    for name in ("Price 1e308 Scarf", "Price Infinity Hat", "Price NaN Belt", "Price Negative Socks"):
        stored = piece(platform, name)
        assert (stored["price"], stored["currency"]) == (None, None), name
    assert platform.rows("SELECT count(*) FROM price_history WHERE NOT isfinite(price) OR price <= 0 OR price > 1e7") == [(0,)]
    assert run_metadata(result)["parse_notes"]["price_rejected"] == 7


def test_image_url_shared_by_two_products_is_stored_for_both_whatever_the_crawl_order(platform, crawled):
    """Bad input: one image URL in the galleries of two products. Both pieces keep it (piece_images, keyed by piece and
    image); images.item_id is the smaller item id, so storing the same items in the other order changes nothing."""
    result, _ = crawled
    assert images_of(platform, "Shared Image Shirt A") == ["shared.jpg", "shirt-a.jpg"]
    assert images_of(platform, "Shared Image Shirt B") == ["shirt-b.jpg", "shared.jpg"]
    shared = platform.rows("SELECT image_url, item_id FROM images WHERE image_url LIKE '%/shared.jpg%'")
    assert [row[1] for row in shared] == ["HO1000013-K11"]
    feed = Path(metadata(result, "pieces")["crawl_log"]).with_name("zalando.jsonl").read_text(encoding="utf-8")
    items = [json.loads(line) for line in feed.splitlines()]
    with platform.duckdb.connect() as con:
        before = warehouse.table_counts(con), con.execute("SELECT count(*) FROM piece_images").fetchone()
        again = warehouse.upsert_items(con, list(reversed(items)), seen_at=warehouse.utcnow() + timedelta(hours=1))
        after = warehouse.table_counts(con), con.execute("SELECT count(*) FROM piece_images").fetchone()
        owner = con.execute("SELECT item_id FROM images WHERE image_url = ?", [shared[0][0]]).fetchone()[0]
    assert before == after and (again.images_new, again.image_links_new) == (0, 0)
    assert owner == "HO1000013-K11"
    hostile = metadata(result, "image_urls", "hostile")
    assert hostile["image_links"] == hostile["images"] + 1


# --- existing DuckDB files -----------------------------------------------------------------------------------


OLD_SCHEMA = (
    """CREATE TABLE brands (slug TEXT PRIMARY KEY, name TEXT NOT NULL, url TEXT NOT NULL, first_seen TIMESTAMPTZ NOT NULL,
       last_seen TIMESTAMPTZ NOT NULL, last_crawled TIMESTAMPTZ)""",
    """CREATE TABLE images (image_url TEXT PRIMARY KEY, item_id TEXT NOT NULL, position INTEGER NOT NULL,
       is_packshot BOOLEAN NOT NULL, flag_model INTEGER NOT NULL DEFAULT -1, first_seen TIMESTAMPTZ NOT NULL,
       last_seen TIMESTAMPTZ NOT NULL)""",
)


def test_duckdb_file_from_before_brand_paths_and_piece_images_keeps_working(tmp_path):
    """Bad input: a DuckDB file written before brands.path / delisted_at / gone_at and piece_images existed, with a
    brand whose URL path is percent-encoded. The first write connection adds the columns, links every stored image
    to its piece once, and the brand keeps its key when the index lists it again."""
    path = tmp_path / "old.duckdb"
    con = duckdb_lib.connect(str(path))
    for statement in OLD_SCHEMA:
        con.execute(statement)
    con.execute("INSERT INTO brands VALUES ('bjorn-borg', 'Björn Borg', 'http://shop/bj%C3%B6rn-borg/', now(), now(), now())")
    con.execute("INSERT INTO images VALUES ('http://shop/img/a.jpg', 'BJ1', 0, false, 1, now(), now())")
    con.close()
    for _ in range(2):  # twice: the migration is idempotent
        with warehouse.connect(path) as con:
            assert warehouse.brand_paths(con) == {"björn-borg": "bjorn-borg"}
            assert con.execute("SELECT item_id, image_url FROM piece_images").fetchall() == [("BJ1", "http://shop/img/a.jpg")]
            assert con.execute("SELECT flag_model FROM images").fetchone() == (1,)
            rows, suffixed = brand_rows([{"name": "Björn Borg", "path": "björn-borg", "url": "http://shop/bj%C3%B6rn-borg/"},
                                         {"name": "bjorn-borg", "path": "bjorn-borg", "url": "http://shop/bjorn-borg/"}],
                                        warehouse.brand_paths(con))
    assert {row["path"]: row["slug"] for row in rows} == {"björn-borg": "bjorn-borg", "bjorn-borg": f"bjorn-borg-{path_hash('bjorn-borg')}"}
    assert [brand["path"] for brand in suffixed] == ["bjorn-borg"]
