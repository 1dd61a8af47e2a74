"""The dataset domain's asset: the human-labelled images, validated, versioned with DVC and pushed to S3."""

import dagster as dg

from fic_assets.defs.dataset.build import build_image_set, store_rejects, trainable_labels
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
    with duckdb.connect(read_only=True) as con:
        labelled = trainable_labels(con)
    if not labelled:
        raise dg.Failure("no worn / not_worn human labels yet: label some images in Label Studio first (materialize `human_labels`)")
    out_dir = image_store.image_dir()
    result = build_image_set(labelled, out_dir, ImageCache.from_settings())
    with duckdb.connect() as con:
        store_rejects(con, result)
    project = image_store.project()
    digest = project.add(out_dir)
    # Pushed after the local set and its DVC hash exist: if S3 is down the run fails loudly, the set stays,
    # and the next run pushes the same hash.
    project.push(out_dir)
    context.log.info(f"image set {digest}: {result.as_metadata()}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "dvc_hash": digest,
            "remote": image_store.remote_url(),
            "rejects": dg.MetadataValue.json({reject.image_url: reject.reason for reject in result.rejects[:50]}),
            **result.as_metadata(),
        },
    )
