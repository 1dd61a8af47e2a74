"""Python imports this at the start of every process that has this directory on PYTHONPATH: a test puts it there
(fic_assets_tests/daemon_loops.py) for the `dagster-daemon run` it starts, directly or under `dg dev`.

In a dagster-daemon process only, the backfill daemon's loop waits FIC_TEST_BACKFILL_LOOP_SECONDS between its
iterations instead of Dagster's fixed 30 s (no instance setting changes it). A backfill then starts its run, and is
marked done, seconds after it was asked for, not up to half a minute later: a test of automation or of the UI's
backfills waits for Dagster's own steps, not for a sleep. The daemon is otherwise the real one, on the real instance."""

import os
import sys


def _is_dagster_daemon(argv: list[str]) -> bool:
    """`dagster-daemon run ...` (the console script) or `python -m dagster._daemon run ...` (how `dagster dev` starts it)."""
    if len(argv) > 1 and os.path.basename(argv[1]) == "dagster-daemon":
        return True
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "dagster._daemon"


_seconds = os.environ.get("FIC_TEST_BACKFILL_LOOP_SECONDS", "")
if _seconds and _is_dagster_daemon(sys.orig_argv):
    import dagster._daemon.controller as _controller

    # The backfill loop reads this module constant on each start (dagster/_daemon/backfill.py); fail loudly if a
    # Dagster upgrade moved it rather than let the tests silently wait 30 s per backfill step again.
    if not isinstance(getattr(_controller, "DEFAULT_DAEMON_INTERVAL_SECONDS", None), int):
        raise RuntimeError("dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS is gone: "
                           "update fic_assets_tests/daemon_site/sitecustomize.py for this Dagster version")
    _controller.DEFAULT_DAEMON_INTERVAL_SECONDS = int(_seconds)
