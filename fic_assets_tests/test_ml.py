"""The worn/not_worn model: weight mapping, a real short training run, evaluation, prediction, baseline.

Real training on generated demo-shop images (easy on purpose: these tests prove the code, not the quality
on real shop photos). No mocks; nothing downloads.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from fic_assets import cli
from fic_assets.ml import CLASSES
from fic_assets.ml.baseline import train_baseline
from fic_assets.ml.data import make_split, write_split
from fic_assets.ml.model import ARCHS, WeightMappingError, build_model, map_by_order
from fic_assets.ml.predict import Predictor
from fic_assets.ml.sample import write_demo_image_set

# Small and quick, but the same code path as the defaults.
FAST_PARAMS = {
    "prepare": {"val_fraction": 0.2, "test_fraction": 0.25, "seed": 1},
    "train": {"input_size": 128, "epochs": 4, "freeze_epochs": 1, "patience": 3, "batch_size": 8},
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_mapped_weights_give_the_reference_models_logits(arch):
    from efficientnet_lite_pytorch import EfficientNet

    spec = ARCHS[arch]
    ours = build_model(arch, num_classes=1000).eval()
    reference = EfficientNet.from_pretrained(spec.package_name, weights_path=spec.weights_path()).eval()
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, spec.native_size, spec.native_size)
    with torch.inference_mode():
        assert (ours(inputs) - reference(inputs)).abs().max().item() < 1e-5


def test_build_model_resets_the_head_to_two_classes():
    model = build_model("tf_efficientnet_lite0", num_classes=2)
    assert model.get_classifier().out_features == 2


def test_mapping_refuses_a_shape_mismatch():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    with pytest.raises(WeightMappingError, match="shape mismatch"):
        map_by_order({"x": torch.zeros(2, 3), "y": torch.zeros(5)}, target)
    with pytest.raises(WeightMappingError, match="1 tensors"):
        map_by_order({"x": torch.zeros(2, 3)}, target)


def write_bad_images(folder: Path) -> dict[str, str]:
    """File name -> the reason decode_rgb gives (CMYK is not bad: it is converted)."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (200, 260), (200, 40, 40)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_bytes(b"<html><body>503 Service Unavailable</body></html>")
    return {"truncated.jpg": "truncated", "empty.jpg": "empty", "notes.jpg": "not_an_image"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """`fic train` on 60 demo images plus one cut-off file among the worn ones."""
    root = tmp_path_factory.mktemp("ml")
    images = root / "images"
    write_demo_image_set(images, 60, seed=7, width=240)
    (images / "worn" / "cut-off.jpg").write_bytes((images / "worn").glob("*.jpg").__next__().read_bytes()[:900])
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(FAST_PARAMS))
    out = root / "model"
    assert cli.main(["train", "--data", str(images), "--out", str(out), "--params", str(params_file)]) == 0
    return {"images": images, "out": out, "root": root}


def test_training_learns_the_easy_set(trained):
    card = json.loads((trained["out"] / "card.json").read_text())
    history = card["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert card["metrics"]["f1"] >= 0.8, card["metrics"]
    assert card["metrics"]["roc_auc"] >= 0.8
    assert card["classes"] == ["not_worn", "worn"] and card["arch"] == "tf_efficientnet_lite0"
    assert card["input_size"] == 128 and card["n_train"] > 0 and card["n_val"] > 0
    assert card["version"] and card["code_version"] and card["trained_at"]
    split = json.loads((trained["out"] / "split.json").read_text())
    assert [s["path"] for s in split["skipped"]] == ["worn/cut-off.jpg"]
    for name in ("model.pt", "metrics.json", "predictions.csv", "pr_curve.csv", "confusion_matrix.png", "pr_curve.png"):
        assert (trained["out"] / name).stat().st_size > 0, name
    with (trained["out"] / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == card["metrics"]["n"] and set(rows[0]) == {"path", "actual", "predicted", "score"}


def test_split_is_stratified_and_stable(trained):
    first = make_split(trained["images"], 0.2, 0.25, seed=1)
    assert first == make_split(trained["images"], 0.2, 0.25, seed=1)
    for name in ("train", "val", "test"):
        assert all(first["counts"][name][label] > 0 for label in CLASSES)
    assert write_split(first, trained["root"] / "again.json").read_text() == (trained["out"] / "split.json").read_text()


def test_fic_predict_reports_bad_images_and_predicts_the_rest(trained, tmp_path, capsys):
    reasons = write_bad_images(tmp_path / "bad")
    worn = sorted((trained["images"] / "worn").glob("*.jpg"))[:3]
    not_worn = sorted((trained["images"] / "not_worn").glob("*.jpg"))[:3]
    cmyk = tmp_path / "cmyk.jpg"
    Image.open(worn[0]).convert("CMYK").save(cmyk)
    missing = tmp_path / "missing.jpg"
    capsys.readouterr()
    status = cli.main(["predict", "--model", str(trained["out"]), *map(str, worn + not_worn), str(cmyk),
                       str(tmp_path / "bad"), str(missing)])
    assert status == 0
    output = capsys.readouterr().out
    assert output.splitlines()[0] == "path,label,score,error"
    rows = {Path(row["path"]).name: row for row in csv.DictReader(io.StringIO(output))}
    assert len(rows) == 6 + 1 + 3 + 1
    for name, reason in reasons.items():
        assert rows[name]["label"] == "error" and rows[name]["error"].startswith(reason), rows[name]
    assert rows["missing.jpg"]["label"] == "error" and rows["missing.jpg"]["error"].startswith("unreadable")
    for path in worn + not_worn + [cmyk]:
        row = rows[path.name]
        assert row["label"] in CLASSES and 0.0 <= float(row["score"]) <= 1.0 and row["error"] == ""
    assert sum(rows[p.name]["label"] == "worn" for p in worn) >= 2
    assert sum(rows[p.name]["label"] == "not_worn" for p in not_worn) >= 2


def test_fic_predict_without_a_model_says_how_to_train(tmp_path, capsys):
    assert cli.main(["predict", "--model", str(tmp_path / "nope"), str(tmp_path)]) != 0
    assert "fic train --data" in capsys.readouterr().err


def test_predict_images_accepts_any_mode(trained):
    predictor = Predictor.load(trained["out"])
    picture = Image.open(sorted((trained["images"] / "worn").glob("*.jpg"))[0])
    images = [picture, picture.convert("RGBA"), picture.convert("L"), picture.convert("P")]
    rows = predictor.predict_images(images, batch_size=3)
    assert len(rows) == 4 and all(label in CLASSES and 0 <= score <= 1 for label, score in rows)
    assert predictor.predict_paths([]) == []


def test_baseline_reports_the_same_metrics(trained, tmp_path):
    metrics = train_baseline(trained["out"] / "split.json", trained["images"], {"size": 16}, tmp_path)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "n"):
        assert key in metrics
    assert metrics["n"] == json.loads((trained["out"] / "metrics.json").read_text())["n"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
