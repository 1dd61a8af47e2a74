"""Runs whose process died without telling Dagster (SIGKILL, an OOM kill, a host reboot, `docker kill`).

Dagster's own run monitoring (`run_monitoring` in both dagster.yaml files, run by the daemon) handles most of
what can go wrong with a run: a run stuck STARTING or CANCELING, a run over its job's `dagster/max_runtime`,
and the pool slots a run still holds after it ended (`free_slots_after_run_end_seconds`: a run that the code
server marked FAILURE when its worker died keeps its `duckdb` slot otherwise). What it cannot do here is tell
that a STARTED run's processes are gone: only launchers that can check a worker's health (Kubernetes, ECS) do,
and the default launcher (runs as processes of the code location, the local setup and the compose stack) and
CLI runs (`dg launch`) cannot. Such a run stays STARTED for ever and keeps its `duckdb` pool slot, so every later
run that writes DuckDB waits at "Step blocked by limit for pool duckdb" for ever, without an error.

So this module does only that: a STARTED run whose recorded processes (Dagster logs each run/step process id as
an engine event) are all gone is marked failed and its pool slots are freed. Without a daemon (`fic release-dead-runs`,
`fic demo` before it starts) nobody applies `free_slots_after_run_end_seconds`, so the same pass also frees the
slots of runs that already ended, once none of their processes runs, with Dagster's own
`free_concurrency_slots_for_run`.

Process ids only mean something on the machine (pid namespace) that ran the run: this runs where the runs run
(`fic demo` before it starts; the code location, which evaluates `dead_run_sensor`, launches the runs), and only
with the default run launcher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import psutil

from fic_assets.platform import processes

# A run still STARTING is run monitoring's (start_timeout_seconds); a STARTED one may have lost its processes.
IN_FLIGHT = [dg.DagsterRunStatus.STARTED]
ENDED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
# A process started more than this after the run logged its pid is another program that got the pid later.
CLOCK_SLACK_SECONDS = 1.0


@dataclass(frozen=True)
class RecordedProcess:
    """A process a run logged: its pid and when the run logged it (Unix time)."""

    pid: int
    logged_at: float


def process_runs(process: RecordedProcess) -> bool:
    """The recorded process still runs: the pid exists, started before the run logged it, and is not a zombie."""
    try:
        found = psutil.Process(process.pid)
        if found.create_time() > process.logged_at + CLOCK_SLACK_SECONDS:
            return False  # the pid was given to a later program
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, owned by someone else, and we cannot tell more
        return True
    return processes.runs(found)


def recorded_processes(instance: dg.DagsterInstance, run_id: str) -> list[RecordedProcess]:
    """The processes the run's engine events recorded (the run worker, the step processes)."""
    found = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        value = (data.metadata or {}).get("pid") if data else None
        if value is not None and str(value.value).isdigit():
            found.setdefault(int(value.value), RecordedProcess(int(value.value), entry.timestamp))
    return list(found.values())


def uses_local_processes(instance: dg.DagsterInstance) -> bool:
    return type(instance.run_launcher).__name__ == "DefaultRunLauncher"


def runs_holding_slots(instance: dg.DagsterInstance) -> set[str]:
    """Ids of the runs that hold a pool slot or wait for one."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return set()
    held = set(storage.get_concurrency_run_ids())
    for pool in storage.get_concurrency_keys():
        held.update(slot.run_id for slot in storage.get_concurrency_info(pool).claimed_slots)
    return held


def release_dead_runs(instance: dg.DagsterInstance,
                      alive: Callable[[RecordedProcess], bool] = process_runs) -> list[str]:
    """Free the pool slots of runs that cannot use them any more; the ids of those runs.

    - a STARTED run whose every recorded process is gone is marked failed, and its slots are freed;
    - a run that ended (SUCCESS, FAILURE, CANCELED) but still holds slots gets them freed once none of its
      recorded processes runs (a step process that outlived its run worker may still be writing DuckDB).

    A STARTED run with no recorded process yet (just starting) is left alone, and so is any run when the
    instance launches runs somewhere else than local processes.
    """
    if not uses_local_processes(instance):
        return []
    released = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        recorded = recorded_processes(instance, run.run_id)
        if not recorded or any(alive(process) for process in recorded):
            continue
        pids = ", ".join(str(process.pid) for process in sorted(recorded, key=lambda p: p.pid))
        instance.report_run_failed(run, message=(
            f"fic: the run's processes ({pids}) are gone (killed, or the machine restarted); "
            "marked failed and its pool slots freed so later runs can write DuckDB"))
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)

    holding = runs_holding_slots(instance) - set(released)
    if holding:
        for run in instance.get_runs(filters=dg.RunsFilter(run_ids=sorted(holding), statuses=ENDED)):
            if any(alive(process) for process in recorded_processes(instance, run.run_id)):
                continue
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
