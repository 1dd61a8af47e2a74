"""dead_run_sensor: runs killed hard (no chance to tell Dagster) are marked failed and give their pool slot back."""

import dagster as dg

from fic_assets.platform import settings
from fic_assets.defs.operations.dead_runs import release_dead_runs


@dg.sensor(
    minimum_interval_seconds=settings.sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks runs whose processes are gone (SIGKILL, OOM, a restart) as failed and frees their `duckdb` pool slot, "
        "and frees the slots of ended runs whose processes are gone, so later DuckDB writers do not wait for ever "
        "(what Dagster's run monitoring cannot see with the default launcher). Evaluated by the code location, "
        "where runs run."
    ),
)
def dead_run_sensor(context: dg.SensorEvaluationContext):
    released = release_dead_runs(context.instance)
    if released:
        context.log.warning(f"released {len(released)} dead run(s): {released}")
    return dg.SkipReason(f"released {len(released)} dead run(s)" if released else "no dead runs")
