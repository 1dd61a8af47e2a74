"""The model domain's assets: the trained model, its quality gate and its promotion."""

from pathlib import Path

import dagster as dg

from fic_assets.defs.model import artifact
from fic_assets.platform import settings
from fic_assets.defs.shared import png_markdown
from fic_assets.defs.model.gate import judge_candidate
from fic_assets.defs.model.params import load_params
from fic_assets.defs.model.train import EVAL_DIR, train_candidate
from fic_assets.defs.dataset.dvc import ImageSetStore, tracked_dir_hash


class ModelConfig(dg.Config):
    params_file: str = ""  # default FIC_PARAMS_FILE: the same params.yaml `dvc repro` reads


@dg.asset(
    group_name="model",
    kinds={"pytorch", "timm"},
    deps=["image_set"],
    # The UI renders descriptions as markdown: a bare <version> is dropped as an HTML tag, in backticks it shows.
    description=(
        "EfficientNet-Lite (ImageNet weights) with a linear probe fitted on every labelled image; its F1 is "
        "cross-validated (mean and spread over folds). The same functions as dvc.yaml's stages; written to "
        "`models/<version>/`."
    ),
)
def model(context: dg.AssetExecutionContext, config: ModelConfig, image_store: ImageSetStore) -> dg.MaterializeResult:
    params = load_params(config.params_file or settings.get("FIC_PARAMS_FILE"))
    images = image_store.image_dir()
    version_dir, card, metrics = train_candidate(images, params, artifact.models_dir(), context.run.run_id, tracked_dir_hash(images))
    context.log.info(f"model {card['version']}: cross-validated F1 {metrics['f1']:.3f} ± {metrics['f1_std']:.3f} "
                     f"over {metrics['cv_folds']} folds x {metrics['cv_repeats']}, {card['n_train']} images, {card['train_seconds']} s")
    return dg.MaterializeResult(
        metadata={
            "version": card["version"],
            "path": dg.MetadataValue.path(str(version_dir)),
            "arch": card["arch"],
            "recipe": card["recipe"],
            "image_set_hash": card["image_set_hash"] or "",
            "n_train": card["n_train"],
            "train_seconds": card["train_seconds"],
            # The gate model_quality applies to this model (from the params file it was trained with).
            "min_f1": float(params["evaluate"]["min_f1"]),
            "max_drop": float(params["evaluate"]["max_drop"]),
            "min_compare_images": int(params["evaluate"]["min_compare_images"]),
            **{name: float(value) for name, value in metrics.items() if isinstance(value, (int, float)) and not isinstance(value, bool)},
            "confusion_matrix": dg.MetadataValue.md(png_markdown(version_dir / EVAL_DIR / "confusion_matrix.png", "Confusion matrix (cross-validation)")),
            "pr_curve": dg.MetadataValue.md(png_markdown(version_dir / EVAL_DIR / "pr_curve.png", "Precision-recall (cross-validation)")),
        }
    )


def latest_model(context) -> tuple[dict, int]:
    """The latest `model` materialization's metadata and storage id."""
    records = context.instance.fetch_materializations(dg.AssetKey("model"), limit=1).records
    if not records or records[0].asset_materialization is None:
        raise dg.Failure("`model` has not been materialized")
    metadata = {key: value.value for key, value in records[0].asset_materialization.metadata.items()}
    return metadata, records[0].storage_id


MODEL_QUALITY = dg.AssetCheckKey(dg.AssetKey("model"), "model_quality")


@dg.asset_check(
    asset="model",
    blocking=True,
    description=(
        "Cross-validated F1 at least evaluate.min_f1, and not more than evaluate.max_drop below the production "
        "model on the labelled images neither was trained on; blocks promotion."
    ),
)
def model_quality(context: dg.AssetCheckExecutionContext, image_store: ImageSetStore) -> dg.AssetCheckResult:
    candidate, _ = latest_model(context)
    production = artifact.production()
    judgement = judge_candidate(Path(candidate["path"]), production, image_store.image_dir(), int(candidate["min_compare_images"]),
                                float(candidate["min_f1"]), float(candidate["max_drop"]))
    card, comparison = judgement.card, judgement.comparison
    cv = card["metrics"]
    metadata = {
        "candidate_version": card["version"],
        "candidate_f1": float(cv["f1"]),
        "candidate_f1_std": float(cv["f1_std"]),
        "cv_images": int(cv["n"]),
        "cv_folds": int(cv["cv_folds"]),
        "cv_repeats": int(cv["cv_repeats"]),
        "evaluated_on": f"out-of-fold scores of all {cv['n']} labelled images ({card['class_counts_train']}), "
                        f"{cv['cv_folds']} folds x {cv['cv_repeats']}, precision {card.get('evaluated_precision', 'f32')}",
        "min_f1": float(candidate["min_f1"]),
        "max_drop": float(candidate["max_drop"]),
    }
    if production is not None:
        metadata["production_version"] = production["version"]
    if comparison is not None:
        metadata["compared_images"] = len(comparison.images)
        if comparison.note:
            metadata["comparison_note"] = comparison.note
        if comparison.production_f1 is not None:
            # production_f1 only exists when there is a production model and images to compare on.
            metadata["production_f1"] = comparison.production_f1
            metadata["candidate_f1_on_compared"] = comparison.candidate_f1
            metadata["compared_on"] = dg.MetadataValue.json(comparison.images[:200])
    return dg.AssetCheckResult(passed=judgement.passed, description=judgement.message, metadata=metadata)


def promotion_blocker(instance: dg.DagsterInstance, model_storage_id: int, version: str) -> str | None:
    """Why the latest model may not be promoted, or None: its latest model_quality evaluation must have passed.

    A blocking check only stops the downstream steps of its own run; this makes `production_model` refuse a
    failed (or never checked) candidate whatever was selected, from the UI, the CLI or a sensor.
    """
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([MODEL_QUALITY]).get(MODEL_QUALITY)
    evaluation = record.evaluation if record is not None else None
    if evaluation is None:
        return f"model {version} has no model_quality evaluation yet: run the check (or retrain_job) first"
    target = evaluation.target_materialization_data
    if target is None or target.storage_id != model_storage_id:
        return f"the latest model_quality evaluation is not of model {version} (the latest `model`): run the check on it first"
    if not evaluation.passed:
        return f"model {version} failed model_quality: {evaluation.description or 'see the check in the UI'}"
    return None


# Promote a new `model` automatically, but only once its blocking `model_quality` check passed on it (automation_sensor
# evaluates it). retrain_job promotes in its own run; eager() ignores an update of `model` by a run that also
# targeted production_model, so that run's model is not promoted twice.
PROMOTION_CONDITION = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager once model_quality passed")


@dg.asset(
    group_name="model",
    deps=["model"],
    kinds={"json"},
    automation_condition=PROMOTION_CONDITION,
    description="Promotes the latest model once its `model_quality` check passed: models/production.json, which scoring and labelling read.",
)
def production_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    candidate, storage_id = latest_model(context)
    blocker = promotion_blocker(context.instance, storage_id, candidate["version"])
    if blocker:
        current = artifact.production()
        raise dg.Failure(description=f"{blocker}; production stays {current['version'] if current else 'empty'}")
    metrics = {name: candidate[name] for name in ("accuracy", "precision", "recall", "f1", "f1_std", "roc_auc") if name in candidate}
    pointer = artifact.promote(Path(candidate["path"]), candidate["version"], metrics)
    return dg.MaterializeResult(data_version=dg.DataVersion(pointer["version"]), metadata={"version": pointer["version"], **metrics})
