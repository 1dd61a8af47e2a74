"""The analytics domain's asset: the Parquet snapshot the report, the dashboard and notebooks read."""

import dagster as dg

from fic_assets.defs.analytics.snapshot import SnapshotSourceError, analytics_dir, write_snapshot
from fic_assets.defs.shared import DUCKDB_POOL
from fic_assets.platform.warehouse import DuckDBResource

# The snapshot reads every brand: it is rebuilt when the pieces or predictions changed, once they settled (no
# dependency updated in the last tick or in progress), so a refresh of many brands makes one snapshot, not one per
# brand. The report's condition was this one before the snapshot existed; the report now follows the snapshot.
SNAPSHOT_CONDITION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated() | dg.AutomationCondition.in_progress()
    ).with_label("any_deps_updated_last_tick_or_in_progress")
    & ~dg.AutomationCondition.in_progress()
).with_label("inputs updated and settled")


@dg.asset(
    group_name="predictions",
    kinds={"parquet", "duckdb"},
    deps=["brand_predictions", "pieces"],
    automation_condition=SNAPSHOT_CONDITION,
    # Reads DuckDB read-only, but in the writers' pool: no writer holds the file while it copies (a read-only open
    # would wait for one), and the copy is one consistent view.
    pool=DUCKDB_POOL,
    description=(
        "A read-only analytics snapshot as Parquet under FIC_ANALYTICS_DIR (default data/analytics): brands, pieces, "
        "images with predictions and scores, price history, colours, the per-brand summary and model.json; "
        "replaced atomically (CURRENT names the snapshot), so readers never open the live DuckDB file."
    ),
)
def analytics_snapshot(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    try:
        with duckdb.connect(read_only=True) as con:
            written = write_snapshot(con, analytics_dir())
    except (FileNotFoundError, SnapshotSourceError) as error:
        raise dg.Failure(description=str(error)) from None
    context.log.info(f"analytics snapshot {written.version}: {written.rows} in {written.seconds:.1f} s"
                     + (f"; deleted {len(written.removed)} older snapshot(s)" if written.removed else ""))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(written.version),
        metadata={
            "version": written.version,
            "path": dg.MetadataValue.path(str(written.path)),
            "rows": dg.MetadataValue.json(written.rows),
            "seconds": written.seconds,
            "removed_snapshots": len(written.removed),
        },
    )
