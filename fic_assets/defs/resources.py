"""One resource per outside system, each configured from environment variables (defaults: the local demo)."""

import dagster as dg

from fic_assets.defs.crawl.crawler import CrawlerResource
from fic_assets.defs.dataset.dvc import ImageSetStore
from fic_assets.defs.labelling.client import LabelStudioResource
from fic_assets.platform import settings
from fic_assets.platform.warehouse import DuckDBResource

settings.apply_defaults()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
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
    )
