"""The model domain: the DVC-versioned image set in S3, the trained model, its quality gate and promotion."""

import shutil
from pathlib import Path

import dagster as dg

from fic_assets import model_registry, settings
from fic_assets.defs.crawl.partitions import DUCKDB_POOL
from fic_assets.defs.metadata import png_markdown
from fic_assets.imageset.build import build_image_set, store_rejects
from fic_assets.imageset.cache import ImageCache
from fic_assets.ml import data as ml_data
from fic_assets.ml.evaluate import evaluate
from fic_assets.ml.params import load_params
from fic_assets.ml.train import train
from fic_assets.imageset.dvc import dvc_file, read_dir_hash
from fic_assets.resources import DuckDBResource, ImageSetStore

def trainable_labels(duckdb: DuckDBResource) -> list[tuple[str, str]]:
    with duckdb.connect(read_only=True) as con:
        return con.execute("SELECT image_url, label FROM labels WHERE label IN ('worn', 'not_worn') ORDER BY image_url").fetchall()


@dg.asset(
    group_name="model",
    kinds={"dvc", "s3", "duckdb"},
    deps=["human_labels"],
    pool=DUCKDB_POOL,
    description="Human-labelled images (worn/, not_worn/; unusable excluded) validated, versioned with DVC and pushed to S3. Data version = the DVC directory hash.",
)
def image_set(context: dg.AssetExecutionContext, duckdb: DuckDBResource, image_store: ImageSetStore) -> dg.MaterializeResult:
    labelled = trainable_labels(duckdb)
    if not labelled:
        raise dg.Failure("no worn / not_worn human labels yet: label some images in Label Studio first (materialize `human_labels`)")
    out_dir = image_store.image_dir()
    result = build_image_set(labelled, out_dir, ImageCache.from_settings())
    with duckdb.connect() as con:
        store_rejects(con, result)
    project = image_store.project()
    digest = project.add(out_dir)
    # Pushed after the local set and its DVC hash exist: if S3 is down the run fails loudly, the set stays,
    # and the next run pushes the same hash.
    project.push(out_dir)
    context.log.info(f"image set {digest}: {result.as_metadata()}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "dvc_hash": digest,
            "remote": image_store.remote_url(),
            "rejects": dg.MetadataValue.json({reject.image_url: reject.reason for reject in result.rejects[:50]}),
            **result.as_metadata(),
        },
    )


class ModelConfig(dg.Config):
    params_file: str = ""  # default FIC_PARAMS_FILE: the same params.yaml `dvc repro` reads


@dg.asset(
    group_name="model",
    kinds={"pytorch", "timm"},
    deps=["image_set"],
    description="EfficientNet-Lite fine-tuned on the image set (the same functions as dvc.yaml's stages); models/<version>/.",
)
def model(context: dg.AssetExecutionContext, config: ModelConfig, image_store: ImageSetStore) -> dg.MaterializeResult:
    params = load_params(config.params_file or settings.get("FIC_PARAMS_FILE"))
    images = image_store.image_dir()
    work = model_registry.models_dir() / "runs" / context.run.run_id
    work.mkdir(parents=True, exist_ok=True)
    split_file = ml_data.write_split(ml_data.make_split(images, **params["prepare"]), work / "split.json")
    pointer = dvc_file(images)
    image_set_hash = read_dir_hash(pointer) if pointer.exists() else None
    card = train(split_file, images, params["train"], work / "model", image_set_hash=image_set_hash)
    metrics = evaluate(work / "model", split_file, images, work / "model" / "eval")
    version_dir = model_registry.models_dir() / card["version"]
    if version_dir.exists():
        shutil.rmtree(version_dir)
    shutil.move(str(work / "model"), version_dir)
    shutil.move(str(split_file), version_dir / "split.json")  # the model dir is self-contained; the run dir goes
    shutil.rmtree(work, ignore_errors=True)
    return dg.MaterializeResult(
        metadata={
            "version": card["version"],
            "path": dg.MetadataValue.path(str(version_dir)),
            "arch": card["arch"],
            "image_set_hash": image_set_hash or "",
            "min_f1": float(params["evaluate"]["min_f1"]),  # the gate model_quality applies to this model
            **{name: float(value) for name, value in metrics.items() if isinstance(value, (int, float))},
            "confusion_matrix": dg.MetadataValue.md(png_markdown(version_dir / "eval" / "confusion_matrix.png", "Confusion matrix (test split)")),
            "pr_curve": dg.MetadataValue.md(png_markdown(version_dir / "eval" / "pr_curve.png", "Precision-recall (test split)")),
        }
    )


def latest_model(context) -> dict:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("model"))
    if event is None or event.asset_materialization is None:
        raise dg.Failure("`model` has not been materialized")
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def quality_verdict(candidate_f1: float, min_f1: float, production_f1: float | None, tolerance: float = 0.01) -> tuple[bool, str]:
    if candidate_f1 < min_f1:
        return False, f"F1 {candidate_f1:.3f} is below the threshold {min_f1:.3f} (params.yaml evaluate.min_f1)"
    if production_f1 is not None and candidate_f1 < production_f1 - tolerance:
        return False, f"F1 {candidate_f1:.3f} is more than {tolerance} below the production model's {production_f1:.3f}"
    return True, f"F1 {candidate_f1:.3f} passes (threshold {min_f1:.3f}, production {production_f1 if production_f1 is not None else 'none'})"


@dg.asset_check(asset="model", blocking=True, description="F1 above the params file's evaluate.min_f1 and not worse than production by more than 0.01; blocks promotion.")
def model_quality(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    candidate = latest_model(context)
    production = model_registry.production()
    production_f1 = float(production["metrics"]["f1"]) if production else None
    min_f1 = float(candidate["min_f1"])
    passed, message = quality_verdict(float(candidate["f1"]), min_f1, production_f1)
    return dg.AssetCheckResult(
        passed=passed,
        description=message,
        metadata={"candidate_f1": float(candidate["f1"]), "production_f1": production_f1 if production_f1 is not None else -1.0, "min_f1": min_f1},
    )


@dg.asset(
    group_name="model",
    deps=["model"],
    kinds={"json"},
    description="Promotes the model that passed `model_quality`: models/production.json, which inference and labelling read.",
)
def production_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    candidate = latest_model(context)
    metrics = {name: candidate[name] for name in ("accuracy", "precision", "recall", "f1", "roc_auc") if name in candidate}
    pointer = model_registry.promote(Path(candidate["path"]), candidate["version"], metrics)
    return dg.MaterializeResult(data_version=dg.DataVersion(pointer["version"]), metadata={"version": pointer["version"], **metrics})
