"""The worn / not_worn image classifier: an ImageNet EfficientNet-Lite fine-tuned with timm.

Plain functions only (no Dagster here): the platform's assets call them, and so do `fic train`,
`fic predict` and the DVC stages (`python -m fic_assets.ml.stages`).
"""

# Class order is fixed: index 1 is the positive class for every metric.
CLASSES: tuple[str, str] = ("not_worn", "worn")
POSITIVE = "worn"
NEGATIVE = "not_worn"
