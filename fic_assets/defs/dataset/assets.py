"""The dataset domain's asset: the human-labelled images, validated, versioned with DVC and pushed to S3."""

import dagster as dg

from fic_assets.defs.dataset.build import NoTrainableLabels, publish_image_set
from fic_assets.defs.dataset.cache import ImageCache
from fic_assets.defs.dataset.dvc import ImageSetStore
from fic_assets.defs.shared import DUCKDB_POOL
from fic_assets.platform.warehouse import DuckDBResource


@dg.asset(
    group_name="model",
    kinds={"dvc", "s3", "duckdb"},
    deps=["human_labels"],
    pool=DUCKDB_POOL,
    description="Human-labelled images (worn/, not_worn/; unusable excluded) validated, versioned with DVC and pushed to S3. Data version = the DVC directory hash.",
)
def image_set(context: dg.AssetExecutionContext, duckdb: DuckDBResource, image_store: ImageSetStore) -> dg.MaterializeResult:
    try:
        published = publish_image_set(duckdb.connect, image_store.image_dir(), ImageCache.from_settings(), image_store.project)
    except NoTrainableLabels as error:
        raise dg.Failure(str(error)) from error
    result = published.result
    context.log.info(f"image set {published.digest}: {result.as_metadata()}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(published.digest),
        metadata={
            "dvc_hash": published.digest,
            "remote": image_store.remote_url(),
            "rejects": dg.MetadataValue.json({reject.image_url: reject.reason for reject in result.rejects[:50]}),
            **result.as_metadata(),
        },
    )
