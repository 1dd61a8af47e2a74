"""dead_run_sensor / `fic release-dead-runs`: a run whose processes are gone gives its `duckdb` pool slot back.

A real Dagster instance (temp dir, the platform's dagster.yaml with the pool limit) and real processes: a child
that has exited stands for a killed run worker, this test's own process for a live one. The end-to-end case
(a CLI crawl SIGKILLed, then the same materialization again) is in test_reliability_crawl.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import dagster as dg
import psutil
import pytest
import yaml
from dagster._core.events import EngineEventData  # no public constructor for the event a run worker logs

from fic_assets.defs.operations.dead_runs import RecordedProcess, process_runs, release_dead_runs
from fic_assets.defs.operations.sensors import dead_run_sensor
from fic_assets.platform.instance import TEMPLATE
from fic_assets.platform.settings import REPO_ROOT

POOL = "duckdb"


@pytest.fixture
def instance(tmp_path):
    shutil.copyfile(TEMPLATE, tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)  # what a run's first step does
        yield instance


def exited_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def started_run(instance, pids: list[int]) -> dg.DagsterRun:
    """A run in STARTED holding a `duckdb` pool slot, with the engine events a run worker logs for its processes."""
    run = instance.add_run(dg.DagsterRun(job_name="crawl_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED))
    for pid in pids:
        instance.report_engine_event(f"Executing steps in process (pid: {pid})", run,
                                     EngineEventData(metadata={"pid": dg.MetadataValue.text(str(pid))}))
    claim = instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, "brand_catalogue")
    assert claim.is_claimed
    return run


def active_slots(instance) -> int:
    return instance.event_log_storage.get_concurrency_info(POOL).active_slot_count


def test_killed_run_is_marked_failed_and_frees_its_pool_slot(instance):
    """Bad input: a run whose worker and step processes were SIGKILLed (both recorded pids are gone)."""
    dead = started_run(instance, [exited_pid(), exited_pid()])
    assert active_slots(instance) == 1
    result = dead_run_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason) and "released 1" in result.skip_message
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert active_slots(instance) == 0
    failure = instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0]
    assert "are gone" in failure.message
    assert release_dead_runs(instance) == []  # once only


def test_live_runs_and_runs_without_a_recorded_process_are_left_alone(instance):
    """Bad input: a run with one live process among dead ones, and a run that has not recorded a process yet."""
    alive = started_run(instance, [exited_pid(), os.getpid()])
    starting = instance.add_run(dg.DagsterRun(job_name="crawl_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTING))
    assert release_dead_runs(instance) == []
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
    assert instance.get_run_by_id(starting.run_id).status == dg.DagsterRunStatus.STARTING
    assert active_slots(instance) == 1


def test_ended_run_that_still_holds_its_slot_gets_it_freed(instance):
    """Bad input: a run the code server already marked FAILURE (its worker died) that still holds its `duckdb`
    slot, beside a FAILURE run whose step process still runs (it may still write DuckDB: its slot stays)."""
    instance.event_log_storage.set_concurrency_slots(POOL, 2)  # room for both
    failed = started_run(instance, [exited_pid()])
    instance.report_run_failed(failed, message="run worker exited unexpectedly")
    busy = started_run(instance, [exited_pid(), os.getpid()])
    instance.report_run_failed(busy, message="run worker exited unexpectedly")
    assert active_slots(instance) == 2  # ending a run does not free its slots: what blocked later writers

    assert release_dead_runs(instance) == [failed.run_id]
    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE  # not failed twice
    assert len(instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)) == 1
    claimed = instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
    assert [slot.run_id for slot in claimed] == [busy.run_id]
    assert release_dead_runs(instance) == []


def test_a_pid_given_to_a_later_program_is_not_the_run_s_process():
    """Bad input: a run recorded a pid that now belongs to a program started after the run logged it."""
    started = psutil.Process(os.getpid()).create_time()
    assert process_runs(RecordedProcess(os.getpid(), logged_at=time.time()))
    assert not process_runs(RecordedProcess(os.getpid(), logged_at=started - 60))
    assert not process_runs(RecordedProcess(exited_pid(), logged_at=time.time()))


def test_both_instance_files_configure_run_monitoring_and_python_logs_alike(tmp_path):
    """The local instance (loaded for real) and the compose stack's carry the same run monitoring and Python log
    settings, and every job has a `dagster/max_runtime` for run monitoring to enforce."""
    from fic_assets.definitions import defs

    local, deploy = (yaml.safe_load(path.read_text()) for path in (TEMPLATE, REPO_ROOT / "deploy" / "dagster.yaml"))
    for section in ("run_monitoring", "python_logs"):
        assert local[section] == deploy[section], section
    shutil.copyfile(TEMPLATE, tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as loaded:
        assert loaded.run_monitoring_enabled
        assert loaded.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert "fic_assets" in loaded.managed_python_loggers and loaded.python_log_level == "INFO"
    jobs = [job for job in defs().resolve_all_job_defs() if not job.name.startswith("__")]
    assert len(jobs) >= 7
    assert all(float(job.tags["dagster/max_runtime"]) >= 3600 for job in jobs), {job.name: job.tags for job in jobs}
