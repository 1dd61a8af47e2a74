"""A test's `dagster-daemon run` (its own, or `dg dev`'s) that takes up queued runs and backfills within seconds.

Dagster's daemon looks at the run queue every 5 s and at backfills every 30 s (fixed: no instance setting changes
it); a test of automation or of the UI's backfills that waits for four runs would mostly wait for those sleeps.
Here the queue is read every second (an instance setting, in the test's own dagster.yaml) and the backfill loop
runs every few seconds (daemon_site/sitecustomize.py). The daemon, its code server and its runs are the real ones."""

from __future__ import annotations

import os
from pathlib import Path

SITE = Path(__file__).resolve().parent / "daemon_site"
BACKFILL_LOOP_SECONDS = 3  # each iteration evaluates the open backfills: not every second
RUN_QUEUE = """
# Added by fic_assets_tests/daemon_loops.py: the test's daemon reads the run queue every second (Dagster: 5 s).
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""


def quick_daemon(env: dict[str, str]) -> dict[str, str]:
    """env for a subprocess whose dagster-daemon (on env's DAGSTER_HOME) takes up runs and backfills quickly; other
    processes started with it are unchanged. Safe to call again on the same instance."""
    config = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
    text = config.read_text()
    if "\nrun_coordinator:" not in text:
        config.write_text(text + RUN_QUEUE)
    path = os.pathsep.join(part for part in (str(SITE), env.get("PYTHONPATH", "")) if part)
    return {**env, "PYTHONPATH": path, "FIC_TEST_BACKFILL_LOOP_SECONDS": str(BACKFILL_LOOP_SECONDS)}
