"""The fic code location: `dagster dev`, `dagster job execute` and workspace.yaml load `defs` from here."""

import dagster as dg

from fic_assets import settings
from fic_assets.defs.crawl import definitions as crawl
from fic_assets.defs.labelling import definitions as labelling
from fic_assets.defs.model import definitions as model
from fic_assets.defs.operations import definitions as operations
from fic_assets.defs.predictions import definitions as predictions
from fic_assets.labelling.client import LabelStudioResource
from fic_assets.resources import CrawlerResource, DuckDBResource, ImageSetStore

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
    "image_store": ImageSetStore(
        dvc_root=dg.EnvVar("FIC_DVC_ROOT"),
        image_set_dir=dg.EnvVar("FIC_IMAGE_SET_DIR"),
        endpoint_url=dg.EnvVar("FIC_S3_ENDPOINT"),
        bucket=dg.EnvVar("FIC_S3_BUCKET"),
        prefix=dg.EnvVar("FIC_S3_PREFIX"),
        access_key_id=dg.EnvVar("FIC_S3_ACCESS_KEY"),
        secret_access_key=dg.EnvVar("FIC_S3_SECRET_KEY"),
    ),
}

# Domain modules are imported as modules: a second Definitions object at module level would confuse loaders.
defs = dg.Definitions.merge(crawl.defs, labelling.defs, model.defs, predictions.defs, operations.defs, dg.Definitions(resources=resources))
