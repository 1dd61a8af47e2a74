"""Declarative automation: the conditions that keep predictions and the report fresh, and the sensor that
evaluates them.

Dagster's own machinery replaces a hand-written staleness sensor: each asset says when it is stale
(`automation_condition=`), and `automation_sensor` evaluates every condition on each tick, from the event log.
A brand's predictions are stale when its `image_urls` (a crawl) or `production_model` (a promotion) updated
after them; a promotion makes every crawled brand stale in the same tick. The sensor emits a request for more
than one partition as a backfill, which honours `brand_predictions`' single-run backfill policy: one run per
range of brands. Why each refresh ran (which dependency updated) is recorded per asset and tick: the UI's asset
page, tab "Automation". The conditions sit on the assets: `brand_predictions` (eager), `production_model`
(eager once `model_quality` passed), `analytics_snapshot` (after its inputs settled) and `brand_report` (eager: in
the snapshot's run).
"""

import dagster as dg

from fic_assets.platform import settings

AUTOMATION_SENSOR_NAME = "automation_sensor"

automation_sensor = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR_NAME,
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval(15),
    description=(
        "Evaluates the assets' automation conditions: a promotion (once model_quality passed), predictions of the "
        "brands whose crawl or production model is newer (one run per range of brands), then the analytics snapshot and "
        "the brand report."
    ),
)
