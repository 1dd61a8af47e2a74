"""The trained model exported to ONNX and compiled with OpenVINO: the fast path for scoring many images.

On 2 CPU cores OpenVINO runs EfficientNet-Lite0 ~3x faster than eager PyTorch and ~1.5x faster than
onnxruntime (benchmarks/inference.py, README). The exported graph takes what the decoder produces, uint8
pixels N x H x W x 3 at the model's input size, and does the normalisation and the softmax itself, so no float
copy of the batch is made in Python. In f32 (the default) its scores equal Predictor.scores (the eager model)
to ~1e-5; bf16 (FIC_INFERENCE_PRECISION=bf16, for CPUs with AMX / AVX512-BF16) is faster again, and its F1
cost is measured by the benchmark.

The export is written once per model version beside the weights (models/<version>/model.onnx) and reused.
Static int8 quantisation (onnxruntime) was measured and rejected: slower on this CPU and up to 0.13 off in P(worn).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fic_assets import settings
from fic_assets.ml import NEGATIVE, POSITIVE
from fic_assets.ml.predict import Predictor, model_card
from fic_assets.ml.train import MODEL_FILE

ONNX_FILE = "model.onnx"
OPSET = 17


class _UInt8Classifier(torch.nn.Module):
    """uint8 NHWC pixels -> class probabilities, with the training normalisation inside the graph."""

    def __init__(self, model: torch.nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("offset", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("scale", 1 / (torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.permute(0, 3, 1, 2).float() - self.offset) * self.scale
        return torch.softmax(self.model(x), dim=1)


def _weights_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / MODEL_FILE).read_bytes()).hexdigest()[:16]


def export_onnx(model_dir: str | Path) -> Path:
    """models/<version>/model.onnx for the weights in the dir (re-exported only when the weights changed)."""
    model_dir = Path(model_dir)
    target = model_dir / ONNX_FILE
    stamp = model_dir / (ONNX_FILE + ".sha256")
    digest = _weights_digest(model_dir)
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return target
    predictor = Predictor.load(model_dir)
    wrapped = _UInt8Classifier(predictor.model.to(memory_format=torch.contiguous_format), predictor.card["mean"], predictor.card["std"]).eval()
    example = torch.zeros(2, predictor.size, predictor.size, 3, dtype=torch.uint8)
    handle, temp = tempfile.mkstemp(dir=model_dir, prefix=".model.", suffix=".onnx.tmp")
    os.close(handle)
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is the one that needs no extra packages; its deprecation notice is noise here.
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (example,), temp, dynamo=False, opset_version=OPSET, input_names=["pixels"],
                              output_names=["probabilities"], dynamic_axes={"pixels": {0: "batch"}, "probabilities": {0: "batch"}})
        os.replace(temp, target)  # a concurrent reader sees the old file or the whole new one
    finally:
        Path(temp).unlink(missing_ok=True)
    stamp.write_text(digest)
    return target


def default_threads() -> int:
    """FIC_INFERENCE_THREADS, else 0: OpenVINO then uses every core."""
    return int(settings.get("FIC_INFERENCE_THREADS") or 0)


PRECISIONS = ("f32", "bf16")


@dataclass
class OpenVinoScorer:
    """Scores batches of uint8 RGB arrays (size x size x 3) with the exported model, compiled by OpenVINO."""

    compiled: object
    card: dict
    positive_index: int

    @classmethod
    def load(cls, model_dir: str | Path, threads: int | None = None, precision: str | None = None) -> OpenVinoScorer:
        import openvino as ov

        model_dir = Path(model_dir)
        card = model_card(model_dir)  # a dir without a model fails here, saying how to train one
        precision = precision or settings.get("FIC_INFERENCE_PRECISION")
        if precision not in PRECISIONS:
            raise ValueError(f"FIC_INFERENCE_PRECISION must be one of {PRECISIONS}, not {precision!r}")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        threads = default_threads() if threads is None else threads
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(core.read_model(str(export_onnx(model_dir))), "CPU", config)
        return cls(compiled=compiled, card=card, positive_index=list(card["classes"]).index(POSITIVE))

    @property
    def size(self) -> int:
        return int(self.card["input_size"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    def label(self, score: float) -> str:
        return POSITIVE if score >= float(self.card.get("threshold", 0.5)) else NEGATIVE

    def scores(self, pixels: np.ndarray) -> list[float]:
        """P(worn) for a uint8 batch N x size x size x 3."""
        if len(pixels) == 0:
            return []
        probabilities = self.compiled(np.ascontiguousarray(pixels, dtype=np.uint8))[0]
        return np.asarray(probabilities)[:, self.positive_index].astype(float).tolist()
