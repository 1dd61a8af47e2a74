"""The compose stack's Dagster instance config (`deploy/dagster.yaml`, copied byte for byte) against a real
PostgreSQL server (Debian's, started by fic_assets_tests/postgres.py): the CLI writes a `brands` run into
Postgres, a real `dagster-daemon` evaluates brand_sensor (tick recorded in Postgres) and works through the
QueuedRunCoordinator's queue (the sensor's crawl run and a run submitted with `dagster job launch` go
QUEUED -> dequeued -> SUCCESS), and every record is read back with plain SQL from Dagster's Postgres tables.
Postgres being unreachable is a clear CLI error naming the connection."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fic_assets.platform import warehouse
from fic_assets_tests.conftest import free_port, platform_env, require, stop_process_group, wait_for
from fic_assets_tests.postgres import PostgresServer, running_postgres

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
DEPLOY_DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"
MODULE = ["-m", "fic_assets.definitions"]
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")


@pytest.fixture(scope="module")
def postgres():
    require(importlib.util.find_spec("dagster_postgres") is not None, "dagster-postgres (pip install dagster-postgres)")
    with running_postgres() as server:
        yield server


def compose_instance_env(root: Path, shop_url: str, pg_env: dict[str, str]) -> dict[str, str]:
    """platform_env's FIC_* settings, DAGSTER_PG_*, and DAGSTER_HOME/dagster.yaml = deploy/dagster.yaml itself."""
    # No Label Studio here: the labelling sensors' ticks fail clearly and change nothing.
    env = platform_env(root, shop_url, FIC_LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}", **pg_env)
    target = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
    shutil.copyfile(DEPLOY_DAGSTER_YAML, target)  # replaces the local template platform_env copied
    assert target.read_bytes() == DEPLOY_DAGSTER_YAML.read_bytes()
    return env


def dagster(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "dagster"), *args], env=env, cwd=Path(env["DAGSTER_HOME"]).parent,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"dagster {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def rows(pg: PostgresServer, sql: str, params: tuple = ()) -> list[tuple]:
    con = pg.connect()
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        con.close()


def wait_with_daemon(predicate, seconds: float, what: str, daemon: subprocess.Popen, log: Path, interval: float = 2.0):
    """wait_for, failing at once when the daemon exits, with the daemon's log in the message."""
    def daemon_alive_and(predicate=predicate):
        assert daemon.poll() is None, f"dagster-daemon exited ({daemon.returncode}):\n{log.read_text()[-5000:]}"
        return predicate()

    return wait_for(daemon_alive_and, seconds, what, interval, details=lambda: f"; daemon log:\n{log.read_text()[-5000:]}")


def runs_tagged(pg: PostgresServer, key: str, value: str) -> list[tuple[str, str, str]]:
    """(run_id, job name, status) of the runs with that tag, straight from Postgres."""
    return rows(pg, """SELECT r.run_id, r.pipeline_name, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id
                       WHERE t.key = %s AND t.value = %s ORDER BY r.id""", (key, value))


def run_status(pg: PostgresServer, run_id: str) -> str:
    return rows(pg, "SELECT status FROM runs WHERE run_id = %s", (run_id,))[0][0]


def run_events(pg: PostgresServer, run_id: str) -> list[str]:
    """The run's run-level event types (RUN_* are stored under their old names PIPELINE_*) in stored order."""
    return [row[0] for row in rows(pg, """SELECT dagster_event_type FROM event_logs
                                         WHERE run_id = %s AND dagster_event_type LIKE 'PIPELINE%%' ORDER BY id""", (run_id,))]


def sensor_ticks(pg: PostgresServer, name: str) -> list[tuple[str, list[str]]]:
    """(status, requested run ids) of the sensor's ticks, from job_ticks.

    tick_body is Dagster's serialized TickData, which stores `instigator_name` under its old name `job_name`.
    """
    ticks = []
    for status, body in rows(pg, "SELECT status, tick_body FROM job_ticks WHERE type = 'SENSOR' ORDER BY id"):
        data = json.loads(body)
        if data.get("job_name") == name:
            ticks.append((status, data.get("run_ids") or []))
    return ticks


def test_daemon_on_postgres_ticks_brand_sensor_and_works_the_run_queue(tmp_path, demo_shop_url, postgres):
    env = compose_instance_env(tmp_path, demo_shop_url, postgres.dagster_env())
    log_path = tmp_path / "dagster-daemon.log"

    # `brands` from the CLI (executed in the CLI process, recorded in Postgres): brand_sensor's first tick has work.
    dagster(env, "asset", "materialize", *MODULE, "--select", "brands")
    ((cli_run,),) = rows(postgres, """SELECT DISTINCT run_id FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'
                                   AND asset_key = %s""", (json.dumps(["brands"]),))
    assert run_status(postgres, cli_run) == "SUCCESS"

    # A run submitted through the instance's QueuedRunCoordinator before any daemon runs: it can only wait.
    dagster(env, "job", "launch", *MODULE, "-j", "discover_brands_job")
    ((launched_run, status),) = rows(postgres, "SELECT run_id, status FROM runs WHERE pipeline_name = 'discover_brands_job'")
    assert status == "QUEUED"
    assert run_events(postgres, launched_run) == ["PIPELINE_ENQUEUED"]

    log = log_path.open("wb")
    # Own session: the daemon's gRPC code server and the run workers it starts are killed with it afterwards.
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", *MODULE], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        def first_crawl_finished():
            runs = runs_tagged(postgres, "fic/trigger", "new_brands")
            return runs[0] if runs and runs[0][2] in TERMINAL else None

        crawl_run, job_name, status = wait_with_daemon(first_crawl_finished, 240, "brand_sensor's crawl run to finish",
                                               daemon, log_path)
        wait_with_daemon(lambda: run_status(postgres, launched_run) in TERMINAL, 120, "the launched run to finish",
                 daemon, log_path)
        heartbeats = {row[0] for row in rows(postgres, "SELECT daemon_type FROM daemon_heartbeats")}
    finally:
        stop_process_group(daemon)
        log.close()

    # Runs: both queued runs succeeded (Postgres `runs`, written by the run workers the daemon launched).
    assert (job_name, status) == ("crawl_job", "SUCCESS"), log_path.read_text()[-5000:]
    assert run_status(postgres, launched_run) == "SUCCESS", log_path.read_text()[-5000:]

    # The queue: RUN_ENQUEUED by the QueuedRunCoordinator, then RUN_STARTING, which is the daemon's dequeue
    # (Dagster 1.13 records taking a run off the queue as RUN_STARTING; it never emits RUN_DEQUEUED), then the
    # run worker's RUN_START and RUN_SUCCESS.
    for run_id in (crawl_run, launched_run):
        assert run_events(postgres, run_id) == ["PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START",
                                                "PIPELINE_SUCCESS"]
    # The CLI's own materialization never went through the queue.
    assert run_events(postgres, cli_run) == ["PIPELINE_START", "PIPELINE_SUCCESS"]

    # The sensor tick that requested the crawl, and its dynamic partitions, live in Postgres too.
    ticks = sensor_ticks(postgres, "brand_sensor")
    assert ("SUCCESS", [crawl_run]) in ticks, ticks
    partitions = [row[0] for row in rows(postgres, """SELECT partition FROM dynamic_partitions
                                                      WHERE partitions_def_name = 'brands' ORDER BY id""")]
    assert "levis" in partitions and len(partitions) >= 10
    tags = dict(rows(postgres, "SELECT key, value FROM run_tags WHERE run_id = %s", (crawl_run,)))
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (partitions[0], partitions[-1])
    crawled = {row[0] for row in rows(postgres, """SELECT partition FROM event_logs WHERE run_id = %s
                                                   AND dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s""",
                                      (crawl_run, json.dumps(["pieces"])))}
    assert crawled == set(partitions)
    # The daemon's own heartbeats: sensors, run queue and run monitoring are all running against Postgres.
    assert {"SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= heartbeats, heartbeats

    # And the crawl reached DuckDB.
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        counts = warehouse.table_counts(con)
    assert counts["brands"] == len(partitions)
    assert counts["pieces"] > 0 and counts["images"] > 0 and counts["crawl_log"] >= 1, counts


def test_postgres_down_is_a_clear_cli_error(tmp_path):
    """Bad input: DAGSTER_PG_PORT names a port where no Postgres listens (the database is down, or the port is
    wrong). Any `dagster` command against the compose config then fails, and says which connection failed."""
    require(importlib.util.find_spec("dagster_postgres") is not None, "dagster-postgres (pip install dagster-postgres)")
    port = free_port()
    env = compose_instance_env(tmp_path, "http://127.0.0.1:9", {
        "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "unused",
    })
    result = subprocess.run([str(BIN / "dagster"), "run", "list"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f'connection to server at "127.0.0.1", port {port} failed: Connection refused' in output, output[-3000:]
    assert "too many retries for DB connection" in output, output[-3000:]
