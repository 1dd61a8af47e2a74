"""The model artifact: one directory per trained model, the only thing training writes and inference reads,
and the production pointer every reader of "the model" goes through.

    models/<version>/model.pt               WornClassifier state dict (backbone + head)
    models/<version>/card.json              what it is: arch, input size, recipe, cross-validated metrics, precision
    models/<version>/training_images.json   the images it was trained on (path, label, content digest)
    models/<version>/cv_predictions.csv     each training image's out-of-fold score (what the quality gate uses)
    models/<version>/model.onnx             the scoring graph, exported once per weights (uint8 pixels -> P(class))
    models/production.json                  {"version", "path", "metrics", "promoted_at"}: the model in use

Training writes a model dir elsewhere and `publish` moves the whole dir into place. The pointer is a small JSON
file replaced atomically, so a reader never sees half a promotion.

Training and inference both import this module and nothing of each other. The exported graphs take what the
decoder produces (uint8 N x H x W x 3 at the input size) and normalise inside, so no float copy of a batch is
made in Python; in f32 OpenVINO's scores equal the eager model's to ~1e-5.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from fic_assets.platform import settings

if TYPE_CHECKING:  # torch and timm take ~3 s to import: scoring a model that is already exported needs neither
    import torch

    from fic_assets.defs.model.network import WornClassifier

MODEL_FILE = "model.pt"
CARD_FILE = "card.json"
ONNX_FILE = "model.onnx"
TRAINING_IMAGES_FILE = "training_images.json"
CV_PREDICTIONS_FILE = "cv_predictions.csv"
POINTER = "production.json"
OPSET = 17
# timm's numbers for the TF-ported EfficientNet-Lite weights: (x - 127.5) / 127.5.
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


class ModelNotFoundError(FileNotFoundError):
    pass


def models_dir() -> Path:
    return Path(settings.get("FIC_MODELS_DIR"))


class NoProductionModel(RuntimeError):
    def __init__(self, where: Path):
        super().__init__(
            f"no production model at {where / POINTER}: train and promote one first "
            "(materialize `image_set`, `model` and `production_model`, e.g. `dg launch --job retrain_job`, "
            "or `fic train --data datasets/images --out models/manual`)"
        )


def production(root: Path | None = None) -> dict | None:
    """The production pointer, or None when no model was promoted yet."""
    path = (root or models_dir()) / POINTER
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def require_production(root: Path | None = None) -> dict:
    pointer = production(root)
    if pointer is None:
        raise NoProductionModel(root or models_dir())
    return pointer


def publish(model_dir: str | Path, version: str, root: Path | None = None) -> Path:
    """Move a whole trained model dir to models/<version>/ (a dir of the same version is replaced); its new path."""
    target = (root or models_dir()) / version
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(model_dir), target)
    return target


def promote(model_dir: Path, version: str, metrics: dict, root: Path | None = None) -> dict:
    root = root or models_dir()
    root.mkdir(parents=True, exist_ok=True)
    pointer = {"version": version, "path": str(Path(model_dir).resolve()), "metrics": metrics, "promoted_at": datetime.now(timezone.utc).isoformat()}
    with tempfile.NamedTemporaryFile("w", dir=root, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        json.dump(pointer, handle, indent=2)
    os.replace(handle.name, root / POINTER)
    return pointer


def write_card(model_dir: str | Path, card: dict) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path


def read_card(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / CARD_FILE).read_text(encoding="utf-8"))


def model_card(model_dir: str | Path) -> dict:
    """The card of a trained model dir; ModelNotFoundError (saying how to train one) when the dir holds none."""
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).is_file() or not (model_dir / CARD_FILE).is_file():
        raise ModelNotFoundError(
            f"no trained model in {model_dir} (needs {MODEL_FILE} and {CARD_FILE}); "
            f"train one with: fic train --data IMAGES_DIR --out {model_dir}")
    return read_card(model_dir)


def training_images(model_dir: str | Path) -> list[dict]:
    """[{path, label, digest}] the model was trained on; [] for a model dir without the file."""
    path = Path(model_dir) / TRAINING_IMAGES_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def save_classifier(model: WornClassifier, model_dir: str | Path) -> Path:
    import torch

    path = Path(model_dir) / MODEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: value.contiguous() for key, value in model.state_dict().items()}, path)
    return path


def load_classifier(model_dir: str | Path) -> WornClassifier:
    import torch

    from fic_assets.defs.model.network import WornClassifier

    card = model_card(model_dir)
    model = WornClassifier(card["arch"], num_classes=len(card["classes"]), pretrained=False)
    model.load_state_dict(torch.load(Path(model_dir) / MODEL_FILE, map_location="cpu", weights_only=True))
    return model.eval()


def _uint8_input(graph: torch.nn.Module, softmax: bool) -> torch.nn.Module:
    """uint8 NHWC pixels -> the wrapped graph, with the training normalisation inside."""
    import torch

    class UInt8Input(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.graph = graph
            self.register_buffer("offset", torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1) * 255)
            self.register_buffer("scale", 1 / (torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1) * 255))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            out = self.graph((pixels.permute(0, 3, 1, 2).float() - self.offset) * self.scale)
            return torch.softmax(out, dim=1) if softmax else out

    return UInt8Input()


def _export(graph: torch.nn.Module, size: int, target: Path, softmax: bool, output: str) -> Path:
    """Write graph as ONNX to target atomically (a concurrent reader sees the old file or the whole new one)."""
    import torch

    wrapped = _uint8_input(graph.eval(), softmax).eval()
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".export.", suffix=".onnx.tmp")
    os.close(handle)
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter needs no extra packages; its deprecation notice is noise here.
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (example,), temp, dynamo=False, opset_version=OPSET, input_names=["pixels"],
                              output_names=[output], dynamic_axes={"pixels": {0: "batch"}, output: {0: "batch"}})
        os.replace(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)
    return target


def _weights_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / MODEL_FILE).read_bytes()).hexdigest()[:16]


def export_onnx(model_dir: str | Path) -> Path:
    """models/<version>/model.onnx for the weights in the dir (re-exported only when the weights changed)."""
    model_dir = Path(model_dir)
    target, stamp = model_dir / ONNX_FILE, model_dir / (ONNX_FILE + ".sha256")
    digest = _weights_digest(model_dir)
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return target
    card = model_card(model_dir)
    _export(load_classifier(model_dir), int(card["input_size"]), target, softmax=True, output="probabilities")
    stamp.write_text(digest)
    return target


def backbone_cache_dir() -> Path:
    configured = settings.get("FIC_BACKBONE_CACHE_DIR")
    return Path(configured) if configured else Path(settings.get("FIC_DATA_DIR")) / "cache" / "backbones"


def export_backbone(arch: str, size: int) -> Path:
    """The ImageNet backbone's feature graph (uint8 pixels -> L2-normalised features), exported once per arch/size.

    Training extracts its features through the same runtime and the same decoder as scoring, so the
    out-of-fold scores the quality gate reads are the scores users get.
    """
    target = backbone_cache_dir() / f"{arch}-{size}.onnx"
    if target.is_file():
        return target
    from fic_assets.defs.model.network import FeatureGraph, WornClassifier

    return _export(FeatureGraph(WornClassifier(arch, pretrained=True)), size, target, softmax=False, output="features")


def version_string(trained_at: datetime, params: dict, data_digest: str) -> str:
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode() + data_digest.encode())
    return f"{trained_at:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:8]}"


def code_version() -> str:
    """The git revision of this checkout (with -dirty), else the installed package version."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=10"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return "fic " + importlib.metadata.version("fic")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
