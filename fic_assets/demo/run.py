"""`fic demo`: the platform end to end on the local demo shop, through Dagster, without a daemon.

It runs what the daemon would run, in order, on the persistent local instance (DAGSTER_HOME), so every run
shows up in `scripts/ui` (`dg dev`) afterwards:
  1. crawl: materialize `brands`, one `brand_sensor` tick (new brands become partitions, their first crawl is
     requested) and that crawl run; when nothing is new, the all-brands run `recrawl_schedule` requests;
  2. labelling: start Label Studio (local), a labelling round (`label_studio_project`, `label_tasks`), a
     SIMULATED annotator answering the round's tasks from the demo shop's kept truth, one `annotation_sensor`
     tick (-> `human_labels`);
  3. model: `relabel_sensor` ticks twice as the daemon would: enough new labels -> `retrain_job` (image set
     versioned with DVC and pushed to S3 -> model -> `model_quality` -> promotion), then the next labelling
     round, pre-annotated and ordered by the new production model. Without a reachable S3 the demo starts
     moto_server locally as a stand-in for the compose stack's MinIO;
  4. predictions: the assets' automation conditions are evaluated as `automation_sensor` would, tick after tick
     until nothing is requested: every brand is stale for the new production model -> one `brand_predictions`
     run over all brands (DuckDB `predictions`, `images.flag_model`), then the static brand report
     (reports/index.html); the demo scores the predictions against the shop's kept truth (F1, worn = positive).

Runs started by a sensor, the schedule or the automation carry the tags the daemon gives them
(`dagster/sensor_name`, ...), so the UI shows what started each of them. The automation's ticks are recorded as the
daemon records `automation_sensor`'s (automation_ticks.py): the UI shows why each refresh ran, and the daemon
started afterwards continues from the demo's cursor.

`fic demo --photos DIR` runs the same loop on real photos (DIR/worn/, DIR/not_worn/; see
fic_assets/demo/shop/photos.py): the demo shop shows them instead of its drawings and the folders are the truth.
At the end it starts the analysts' dashboard (`fic dashboard`) in the background and prints its URL.
`fic demo --stop` stops the demo shop, Label Studio, local S3 and dashboard that it left running in the background.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import dagster as dg

from fic_assets.platform import progress
from fic_assets.platform import settings
from fic_assets.platform import warehouse
from fic_assets.platform.instance import prepare_dagster_home

if TYPE_CHECKING:
    from fic_assets.demo.shop.catalogue import Catalogue
    from fic_assets.demo.shop.photos import PhotoSet

SEED = 42  # the catalogue seed of the demo shop `fic demo` starts and of the truth it answers from

# Dagster's console logger prints every event at DEBUG; the demo's reader wants the INFO story.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def say(message: str) -> None:
    progress.say(f"[fic demo] {message}")  # above the step bar, when there is one


def shop_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/robots.txt", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def ensure_demo_shop(shop_url: str, photos: PhotoSet | None = None) -> None:
    """Start the embedded demo shop in the background when the crawler points at it and it is not up; then make
    sure a demo shop at shop_url serves what the demo's truth expects (the seed, drawings or these photos) and
    serves its pages, not only its health (a leftover shop stops the demo, naming its pid and how to stop it)."""
    from fic_assets.demo.shop import server

    if shop_url.rstrip("/") == settings.DEMO_SHOP_URL and not shop_answers(shop_url):
        if server.start_background(settings.DEMO_SHOP_HOST, settings.DEMO_SHOP_PORT, SEED, photos) != 0:
            raise SystemExit(f"could not start the demo shop on {settings.DEMO_SHOP_URL}")
    found = server.probe(shop_url.rstrip("/"))
    if isinstance(found, dict) and not server.serves(found, SEED, photos):
        stop = " (fic demo-shop --stop)" if shop_url.rstrip("/") == settings.DEMO_SHOP_URL else ""
        raise SystemExit(
            f"the demo shop at {shop_url} serves {server.describe(found.get('seed'), found.get('photos'))}, but this "
            f"demo answers from the truth of {server.describe(SEED, photos)}; stop that shop{stop} and run again"
        )
    if isinstance(found, dict) and (problem := server.page_problem(shop_url.rstrip("/"))) is not None:
        raise SystemExit(server.broken_shop_error(shop_url.rstrip("/"), problem))
    if photos is not None and not isinstance(found, dict):
        raise SystemExit(f"--photos needs the demo shop, but {shop_url} (FIC_SHOP_URL) is not one")


def ensure_dashboard() -> str:
    """Start the analysts' dashboard in the background on 127.0.0.1:FIC_DASHBOARD_PORT (unless it runs); say where."""
    from fic_assets.dashboard import server as dashboard
    from fic_assets.platform import processes

    try:
        url = dashboard.start_background(dashboard.HOST, int(settings.get("FIC_DASHBOARD_PORT")))
    except processes.ProcessError as error:  # the demo's results are there; the dashboard can be started later
        return (f"warning: the dashboard did not start ({error}); start it with `.venv/bin/fic dashboard --port PORT`")
    return f"the dashboard (brands, worn share, example images, the model, downloads): {url}"


def ensure_label_studio() -> None:
    """Start the local Label Studio (its own venv, installed on first use) unless FIC_LABEL_STUDIO_URL is remote."""
    from fic_assets.defs.labelling import server

    config = server.configured()
    if urlsplit(config.url).hostname not in ("127.0.0.1", "localhost"):
        return
    if server.run_start(config, timeout=server.START_TIMEOUT) != 0:
        raise SystemExit(f"could not start Label Studio on {config.url}; see {config.data_dir}")


def stop_started() -> int:
    """`fic demo --stop`: stop the background demo shops, Label Studio and the local S3 that their pid files
    record (as the demo starts them) and say what was stopped; nothing recorded is not an error."""
    from fic_assets.dashboard import server as dashboard
    from fic_assets.defs.labelling import server as label_studio
    from fic_assets.demo.shop import server as shop
    from fic_assets.platform import local_s3, processes

    label_studio_data = label_studio.configured().data_dir
    records = [("the demo shop", path) for path in shop.background_pid_files()] + [
        ("Label Studio", label_studio.pid_path(label_studio_data)),
        ("the local S3 (moto_server)", local_s3.pid_file()),
    ] + [("the dashboard", path) for path in dashboard.background_pid_files()]
    stopped, failed = 0, False
    for what, pid_file in records:
        try:
            process = processes.stop(pid_file, grace=label_studio.STOP_TIMEOUT)
        except processes.ProcessError as error:
            say(f"error: could not stop {what}: {error}")
            failed = True
            continue
        if process is not None:
            say(f"stopped {what} on {process.url} (pid {process.pid})")
            stopped += 1
    if not stopped and not failed:
        say("nothing to stop: no background demo shop, Label Studio, local S3 or dashboard is recorded as running "
            f"(no live record in {processes.data_dir()} or {label_studio_data})")
    return 1 if failed else 0


# A retrain whose model fails `model_quality` is a normal outcome: the loop goes on with the old model.
MAY_FAIL = {"retrain_job"}


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, request: dg.RunRequest,
            tags: dict[str, str] | None = None) -> None:
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, tags={**request.tags, **(tags or {})}, partition_key=request.partition_key,
        run_config=QUIET_LOGS, raise_on_error=False,
    )
    check_result(job_name, result)


def check_result(job_name: str, result: dg.ExecuteInProcessResult) -> None:
    if result.success:
        return
    if job_name in MAY_FAIL:
        say(f"{job_name} run {result.run_id} did not pass (see its asset checks in the UI); going on with the current model")
        return
    raise SystemExit(f"{job_name} run {result.run_id} failed; see `scripts/ui` (`dg dev`) or the log above")


# The tags Dagster's daemon gives the runs it starts; the UI's "Launched by" reads them (without: "Manually launched").
SENSOR_NAME_TAG = "dagster/sensor_name"
SCHEDULE_NAME_TAG = "dagster/schedule_name"


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, sensor_name: str) -> int:
    """Evaluate a sensor once as the daemon would: apply its partition requests, execute its run requests."""
    sensor = defs.resolve_sensor_def(sensor_name)
    with dg.build_sensor_context(instance=instance, resources=defs.resources, sensor_name=sensor_name) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason):
        say(f"{sensor_name}: {result.skip_message}")
        return 0
    if isinstance(result, dg.RunRequest):
        requests = [result]
    elif isinstance(result, list):
        requests = result
    else:
        for request in result.dynamic_partitions_requests or ():
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        requests = list(result.run_requests or ())
        if not requests and result.skip_reason:
            say(f"{sensor_name}: {result.skip_reason.skip_message}")
    for request in requests:
        # A sensor with several jobs names the job in each request.
        execute(defs, instance, request.job_name or sensor.job_name, request, tags={SENSOR_NAME_TAG: sensor_name})
    return len(requests)


def partition_ranges(ordered: list[str], chosen: set[str]) -> list[tuple[str, str]]:
    """The chosen partitions as (first, last) ranges of neighbours in partition order: with a single-run backfill
    policy, what Dagster's backfill daemon runs as one run each."""
    ranges: list[tuple[str, str]] = []
    start = previous = None
    for key in [*ordered, None]:
        if key in chosen:
            start, previous = start or key, key
        elif start is not None:
            ranges.append((start, previous))
            start = None
    return ranges


def requested_runs(run_requests, graph) -> list[tuple[list[dg.AssetKey], set[str | None]]]:
    """What the run requests of an automation tick ask for, in dependency order, as (asset keys, partition keys or
    {None}): a run request as it is (the daemon's sensor requests the unpartitioned assets stale in one tick, e.g.
    analytics_snapshot and brand_report, as one run), a backfill (brand partitions) per asset."""
    order = {key: index for index, key in enumerate(graph.toposorted_asset_keys)}
    runs: list[tuple[list[dg.AssetKey], set[str | None]]] = []
    for request in run_requests:
        if request.asset_graph_subset is not None:  # a backfill: for the backfill daemon in the daemon's case
            by_key: dict[dg.AssetKey, set[str | None]] = {}
            for asset_partition in request.asset_graph_subset.iterate_asset_partitions():
                by_key.setdefault(asset_partition.asset_key, set()).add(asset_partition.partition_key)
            runs.extend(([key], partitions) for key, partitions in by_key.items())
        else:
            runs.append((sorted(request.asset_selection or (), key=order.__getitem__), {request.partition_key}))
    return sorted(runs, key=lambda run: min(order[key] for key in run[0]))


def automation_tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> int:
    """One tick of `automation_sensor`, as the daemon would tick it, recorded in the instance as the daemon records
    it (the sensor's tick, each asset's evaluation with its runs, the cursor the daemon continues from; see
    automation_ticks.py); what it requests is executed here: unpartitioned assets requested together in one run, a
    brand-partitioned one in one run per range of brands (its single-run backfill policy, what the backfill daemon
    would run). Returns how many runs were started."""
    from dagster._core.utils import make_new_run_id

    from fic_assets.demo.automation_ticks import record_tick
    from fic_assets.defs.predictions.sensors import AUTOMATION_SENSOR_NAME

    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    outcomes = []
    with record_tick(defs, instance, defs.resolve_sensor_def(AUTOMATION_SENSOR_NAME)) as tick:
        for keys, partitions in requested_runs(tick.run_requests, graph):
            if any(not outcome.success for _, outcome in outcomes):
                break
            names = ", ".join(key.to_user_string() for key in keys)
            partitions_def = graph.get(keys[0]).partitions_def
            if partitions_def is None:
                runs = [{}]
            else:
                ordered = list(instance.get_dynamic_partitions(partitions_def.name))
                runs = [{"dagster/partition": first} if first == last else
                        {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
                        for first, last in partition_ranges(ordered, partitions)]
            say(f"{AUTOMATION_SENSOR_NAME}: {names} {'is' if len(keys) == 1 else 'are'} stale"
                + (f" for {len(partitions)} brand(s), {len(runs)} run(s)" if partitions_def is not None else ""))
            for partition_tags in runs:
                run_id = make_new_run_id()
                tick.start_run(run_id, keys)
                outcome = job.execute_in_process(instance=instance, asset_selection=keys, run_id=run_id,
                                                 tags={**tick.run_tags, **partition_tags}, run_config=QUIET_LOGS,
                                                 raise_on_error=False)
                outcomes.append((names, outcome))
                if not outcome.success:
                    break
    for names, outcome in outcomes:  # after the tick is recorded: a failed run is the run's failure, not the tick's
        check_result(names, outcome)
    return len(outcomes)


def crawl(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    from fic_assets.defs.crawl.sensors import recrawl_schedule

    execute(defs, instance, "discover_brands_job", dg.RunRequest())
    if not tick(defs, instance, "brand_sensor"):
        # Nothing new: the weekly schedule's request, all brands in one run.
        with dg.build_schedule_context(instance=instance) as context:
            execute(defs, instance, "crawl_job", recrawl_schedule.evaluate_tick(context).run_requests[0],
                    tags={SCHEDULE_NAME_TAG: recrawl_schedule.name})


def label(defs: dg.Definitions, instance: dg.DagsterInstance, error_rate: float, catalogue: Catalogue) -> None:
    from fic_assets.demo.shop.catalogue import truth_rows
    from fic_assets.defs.labelling import simulated_annotator

    execute(defs, instance, "labelling_round_job", dg.RunRequest())
    truth = simulated_annotator.truth_by_url(truth_rows(catalogue, settings.get("FIC_SHOP_URL").rstrip("/")))
    # build_resources resolves the EnvVar settings exactly as a run would.
    with dg.build_resources({"label_studio": defs.resources["label_studio"]}) as resources, resources.label_studio.session() as session:
        report = simulated_annotator.annotate_open_tasks(session, session.project_id(), truth, error_rate=error_rate)
    say(f"SIMULATED annotator answered {report.answered} tasks ({report.wrong_on_purpose} wrong on purpose): {report.by_label}")
    tick(defs, instance, "annotation_sensor")


def retrain_and_relabel(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    from fic_assets.defs.model import artifact

    tick(defs, instance, "relabel_sensor")  # -> retrain_job
    tick(defs, instance, "relabel_sensor")  # -> the next labelling round, with the new model's hints
    production = artifact.production()
    if production:
        say(f"production model {production['version']}: " + ", ".join(f"{k}={v:.3f}" for k, v in production["metrics"].items()))

def f1(pairs: list[tuple[str, str]]) -> float:
    """F1 of (truth, predicted) pairs with worn as the positive class; 0.0 when nothing is worn on either side."""
    tp = sum(1 for truth, predicted in pairs if truth == predicted == "worn")
    fp = sum(1 for truth, predicted in pairs if truth == "not_worn" and predicted == "worn")
    fn = sum(1 for truth, predicted in pairs if truth == "worn" and predicted == "not_worn")
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def score_against_truth(con, catalogue: Catalogue, shop_url: str) -> str:
    """The predictions scored against the shop's kept truth: on every scored image, and on the images whose
    picture no label has seen (another URL of a labelled photo counts as seen), which the model never trained on."""
    from fic_assets.demo.shop.catalogue import truth_rows
    from fic_assets.defs.labelling.labels import labelled_image_urls
    from fic_assets.defs.labelling.simulated_annotator import truth_by_url
    from fic_assets.defs.predictions.predict import prediction_labels

    rows = truth_rows(catalogue, shop_url)
    truth = truth_by_url(rows)
    picture = {row["image_url"]: row["photo"] or row["image_url"] for row in rows}
    seen = {picture[url] for url in labelled_image_urls(con) if url in picture}
    predicted = prediction_labels(con)
    scored = [(url, truth[url], label) for url, label in predicted
              if truth.get(url) in ("worn", "not_worn") and label in ("worn", "not_worn")]
    unscored = sum(1 for url, label in predicted if truth.get(url) in ("worn", "not_worn") and label not in ("worn", "not_worn"))
    unseen = [(t, p) for url, t, p in scored if picture[url] not in seen]
    kind = "photo" if catalogue.photos else "image"
    return (f"predictions against the shop's kept truth: F1 {f1([(t, p) for _, t, p in scored]):.3f} on {len(scored)} images; "
            f"F1 {f1(unseen):.3f} on the {len(unseen)} whose {kind} no label has seen"
            + (f"; {unscored} usable images could not be scored" if unscored else ""))


def warn_about_other_images(catalogue: Catalogue, shop_url: str) -> None:
    """Labels left in DuckDB by an earlier demo with other images (drawings, other photos) stay in the image set
    and so in the model and its F1: say so, since they are easy to forget."""
    from fic_assets.demo.shop.catalogue import truth_rows
    from fic_assets.defs.labelling.labels import labelled_image_urls

    path = Path(settings.get("FIC_DUCKDB"))
    if not path.exists():
        return
    try:
        with warehouse.connect(path, read_only=True, wait_seconds=5) as con:
            urls = labelled_image_urls(con)
    except Exception:  # noqa: BLE001  no labels table yet, or the file is busy: nothing to warn about
        return
    served = {row["image_url"] for row in truth_rows(catalogue, shop_url)}
    other = [url for url in urls if url.startswith(f"{shop_url}/img/") and url not in served]
    if other:
        say(f"warning: {len(other)} labels in {path} are of demo shop images this shop does not serve now (an earlier "
            "demo with other images?); they stay in the image set, the model and its F1. For a clean run use a fresh "
            "FIC_DATA_DIR and DAGSTER_HOME")


def refresh(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """Tick the automation until it settles (two ticks in a row start nothing: the report waits a tick after the
    last update of its inputs), as the daemon's `automation_sensor` would over the next minutes."""
    quiet = 0
    for _ in range(10):
        runs = automation_tick(defs, instance)
        quiet = 0 if runs else quiet + 1
        if quiet == 2:
            return
    raise SystemExit("the automation did not settle after 10 ticks; see the runs in `scripts/ui` (`dg dev`)")


def predict_and_report(defs: dg.Definitions, instance: dg.DagsterInstance, catalogue: Catalogue) -> None:
    from fic_assets.defs.predictions.predict import predictions_by_label

    refresh(defs, instance)  # -> brand_predictions over the brands the production model has not seen, the report
    with warehouse.connect(settings.get("FIC_DUCKDB"), read_only=True) as con:
        by_label = predictions_by_label(con)
        say(f"predictions: {by_label}; analytics snapshot (Parquet): {settings.get('FIC_ANALYTICS_DIR')}; "
            f"brand report: {Path(settings.get('FIC_REPORTS_DIR')) / 'index.html'}")
        say(score_against_truth(con, catalogue, settings.get("FIC_SHOP_URL").rstrip("/")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fic demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-pages", type=int, default=None, help="listing pages per brand (default: FIC_MAX_PAGES, 0 = all)")
    parser.add_argument("--error-rate", type=float, default=0.03, help="share of wrong answers of the simulated annotator")
    parser.add_argument("--crawl-only", action="store_true", help="stop after the crawl (no Label Studio)")
    parser.add_argument("--photos", metavar="DIR", help="real photos in DIR/worn/ and DIR/not_worn/ instead of the demo "
                        "shop's drawings; the folders are the truth (use a fresh FIC_DATA_DIR and DAGSTER_HOME)")
    parser.add_argument("--stop", action="store_true", help="stop what the demo started in the background (the demo "
                        "shop, Label Studio, the local S3), say what was stopped, and exit")
    args = parser.parse_args(argv)
    if args.stop:
        return stop_started()
    if args.max_pages is not None:
        os.environ["FIC_MAX_PAGES"] = str(args.max_pages)
    from fic_assets.demo.shop.catalogue import build_catalogue
    from fic_assets.demo.shop.server import photos_or_exit

    photos = photos_or_exit(args.photos)  # checked before anything starts
    catalogue = build_catalogue(seed=SEED, photos=photos)
    if photos is not None:
        say(f"photos: {len(photos.worn)} worn, {len(photos.not_worn)} not_worn from {photos.root}"
            + (f" ({len(photos.skipped)} unreadable files skipped)" if photos.skipped else ""))
    settings.apply_defaults()
    home = prepare_dagster_home()
    shop_url = settings.get("FIC_SHOP_URL")
    ensure_demo_shop(shop_url, photos)
    warn_about_other_images(catalogue, shop_url.rstrip("/"))
    if not args.crawl_only:
        ensure_label_studio()
        from fic_assets.platform.local_s3 import ensure_local_s3

        say(ensure_local_s3() or "S3: " + settings.get("FIC_S3_ENDPOINT"))

    from fic_assets.definitions import defs as load_defs

    defs = load_defs()

    with dg.DagsterInstance.get() as instance:
        say(f"shop {shop_url}; Dagster instance {home}")
        from fic_assets.defs.operations.dead_runs import release_dead_runs

        for run_id in release_dead_runs(instance):  # an earlier demo killed hard would hold the duckdb pool slot
            say(f"released run {run_id}: its process was gone")
        if not args.crawl_only:
            # An automation tick before the crawl: on a new instance its first, which takes what it finds as
            # handled, so that what changes from here on (crawl, promotion) counts as an update; on an instance a
            # daemon or an earlier demo ticked, it continues from their cursor.
            automation_tick(defs, instance)
        # The four steps of the docstring as a bar on stderr (a terminal only): where a 6-minute demo is.
        steps = progress.bar(total=1 if args.crawl_only else 4, desc="fic demo: crawl", unit="step")
        crawl(defs, instance)
        steps.update()
        if not args.crawl_only:
            steps.set_description("fic demo: labelling")
            label(defs, instance, args.error_rate, catalogue)
            steps.update()
            steps.set_description("fic demo: model")
            retrain_and_relabel(defs, instance)
            steps.update()
            steps.set_description("fic demo: predictions")
            predict_and_report(defs, instance, catalogue)
            steps.update()
        steps.close()

    with warehouse.connect(settings.get("FIC_DUCKDB"), read_only=True) as con:
        counts = warehouse.table_counts(con)
    say(f"DuckDB {settings.get('FIC_DUCKDB')}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    say(f"open the UI: scripts/ui (DAGSTER_HOME={home}); label in Label Studio: {settings.get('FIC_LABEL_STUDIO_URL')}")
    if not args.crawl_only:
        say(ensure_dashboard())  # last: the line an analyst reads (`fic demo --stop` stops it)
    return 0


if __name__ == "__main__":
    sys.exit(main())
