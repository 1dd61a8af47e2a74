import dagster as dg

from fic_assets.defs.operations import sensors

defs = dg.Definitions(sensors=[sensors.dead_run_sensor])
