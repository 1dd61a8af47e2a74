"""The fic code location: `dagster dev`, `dagster job execute` and workspace.yaml load `defs` from here."""

import dagster as dg

from fic_assets import settings
from fic_assets.defs.crawl import definitions as crawl
from fic_assets.defs.labelling import definitions as labelling
from fic_assets.labelling.client import LabelStudioResource
from fic_assets.resources import CrawlerResource, DuckDBResource

settings.apply_defaults()

resources = {
    "duckdb": DuckDBResource(path=dg.EnvVar("FIC_DUCKDB")),
    "crawler": CrawlerResource(
        shop_url=dg.EnvVar("FIC_SHOP_URL"),
        brand_index_path=dg.EnvVar("FIC_BRAND_INDEX_PATH"),
        max_pages=dg.EnvVar.int("FIC_MAX_PAGES"),
        render=dg.EnvVar("FIC_RENDER"),
        splash_url=dg.EnvVar("FIC_SPLASH_URL"),
        http_cache=dg.EnvVar("FIC_HTTP_CACHE"),
    ),
    "label_studio": LabelStudioResource(url=dg.EnvVar("FIC_LABEL_STUDIO_URL"), token=dg.EnvVar("FIC_LABEL_STUDIO_TOKEN")),
}

# Domain modules are imported as modules: a second Definitions object at module level would confuse loaders.
defs = dg.Definitions.merge(crawl.defs, labelling.defs, dg.Definitions(resources=resources))
