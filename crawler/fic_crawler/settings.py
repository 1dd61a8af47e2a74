"""Scrapy settings for the fic crawler: polite by default.

FIC_* values come from the environment with the same names and defaults as fic_assets/platform/settings.py; any of
them can also be given as `-s FIC_...=value`. The spiders apply the shop-dependent pacing and the render
mode (fic_crawler.config.configure_crawl) once they know the shop URL and render mode of the crawl.
"""

from fic_crawler.config import env, politeness, truthy

BOT_NAME = "fic_crawler"
SPIDER_MODULES = ["fic_crawler.spiders"]
NEWSPIDER_MODULE = "fic_crawler.spiders"

# --- the platform's settings -----------------------------------------------------------------------------
FIC_SHOP_URL = env("FIC_SHOP_URL")
FIC_BRAND_INDEX_PATH = env("FIC_BRAND_INDEX_PATH")
FIC_MAX_PAGES = int(env("FIC_MAX_PAGES"))
FIC_RENDER = env("FIC_RENDER")
FIC_SPLASH_URL = env("FIC_SPLASH_URL")
FIC_HTTP_CACHE = truthy(env("FIC_HTTP_CACHE"))
FIC_STATS_FILE = env("FIC_STATS_FILE")
FIC_CHROMIUM = env("FIC_CHROMIUM")
# How often a crawl Dagster started (a Pipes process) logs its progress into the run.
FIC_PROGRESS_SECONDS = float(env("FIC_PROGRESS_SECONDS"))

# --- politeness ------------------------------------------------------------------------------------------
# Honest: says what it is; operators add a contact URL or address for the real shop (FIC_USER_AGENT).
USER_AGENT = env("FIC_USER_AGENT")
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_MAX_DELAY = 30.0
RETRY_ENABLED = True
RETRY_TIMES = 3
DOWNLOAD_TIMEOUT = 30
# Real shop: ~1 request/s, 4 in flight at most, AutoThrottle backing off. A loopback demo shop is crawled
# without delay (see config.politeness for why); the spider re-applies this for a `-a shop_url=...`.
_PACE = politeness(FIC_SHOP_URL)
DOWNLOAD_DELAY = _PACE["DOWNLOAD_DELAY"]
AUTOTHROTTLE_START_DELAY = _PACE["AUTOTHROTTLE_START_DELAY"]
AUTOTHROTTLE_TARGET_CONCURRENCY = _PACE["AUTOTHROTTLE_TARGET_CONCURRENCY"]
CONCURRENT_REQUESTS_PER_DOMAIN = _PACE["CONCURRENT_REQUESTS_PER_DOMAIN"]

# --- cache, output, components ---------------------------------------------------------------------------
HTTPCACHE_ENABLED = FIC_HTTP_CACHE
HTTPCACHE_DIR = "httpcache"  # under crawler/.scrapy/
HTTPCACHE_EXPIRATION_SECS = 24 * 3600
HTTPCACHE_IGNORE_HTTP_CODES = [500, 502, 503, 504, 429]

FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "fic_crawler.middlewares.HeadMetaRefreshMiddleware": 580,
}
# Items (and requests) of one response's callback output processed at once. Scrapy starts this many cooperative
# tasks for every response (default 100: in a profile of the 580-page demo crawl, 58,000 coiterate calls and most of
# its 140,000 Deferred callbacks); our callbacks yield one item or a listing's requests, our pipelines are synchronous.
CONCURRENT_ITEMS = 4
ITEM_PIPELINES = {
    "fic_crawler.pipelines.ValidationPipeline": 100,
    "fic_crawler.pipelines.DedupePipeline": 200,
}
EXTENSIONS = {
    "fic_crawler.extensions.StatsFile": 900,
    "fic_crawler.extensions.PipesProgress": 910,
}

# Scrapy 2.13's default; scrapy-playwright needs it, so it is stated rather than implied.
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
