"""Runs whose process died without telling Dagster (SIGKILL, an OOM kill, a host reboot, `docker kill`).

Such a run stays STARTED for ever and keeps its `duckdb` pool slot, so every later run that writes DuckDB waits
at "Step blocked by limit for pool duckdb" for ever, without an error. Dagster's run monitoring catches dead
runs only for launchers that can check a worker's health; the default launcher (runs as processes of the code
location, the local setup and the compose stack) and CLI runs cannot. So: a run whose recorded processes
(Dagster logs each run/step process id as an engine event) are all gone is marked failed, and its pool slots
are freed.

Process ids only mean something on the machine (pid namespace) that ran the run: this runs where the runs run
(`fic demo` before it starts; the code location, which evaluates `dead_run_sensor`, launches the runs), and only
with the default run launcher. A Kubernetes or Docker launcher has its own health checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:  # a killed child nobody reaped yet is a zombie: dead for our purpose
        return " Z" not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    except OSError:
        return True


def recorded_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    """The process ids the run's engine events recorded (the run worker, the step processes)."""
    pids = set()
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        value = (data.metadata or {}).get("pid") if data else None
        if value is not None and str(value.value).isdigit():
            pids.add(int(value.value))
    return pids


def uses_local_processes(instance: dg.DagsterInstance) -> bool:
    return type(instance.run_launcher).__name__ == "DefaultRunLauncher"


def release_dead_runs(instance: dg.DagsterInstance, alive: Callable[[int], bool] = process_alive) -> list[str]:
    """Mark in-flight runs whose every recorded process is gone as failed and free their pool slots; their ids.

    A run with no recorded process yet (just starting) is left alone, and so is any run when the instance
    launches runs somewhere else than local processes.
    """
    if not uses_local_processes(instance):
        return []
    released = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        pids = recorded_pids(instance, run.run_id)
        if not pids or any(alive(pid) for pid in pids):
            continue
        instance.report_run_failed(run, message=(
            f"fic: the run's processes ({', '.join(map(str, sorted(pids)))}) are gone (killed, or the machine restarted); "
            "marked failed and its pool slots freed so later runs can write DuckDB"))
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def main(argv: list[str] | None = None) -> int:
    """`fic release-dead-runs`: the same clean-up by hand, for CLI users without a running daemon."""
    import argparse

    argparse.ArgumentParser(prog="fic release-dead-runs", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    from fic_assets.platform.instance import prepare_dagster_home

    prepare_dagster_home()
    with dg.DagsterInstance.get() as instance:
        released = release_dead_runs(instance)
    print(f"released {len(released)} dead run(s)" + (": " + ", ".join(released) if released else ""))
    return 0
