"""The worn / not_worn image classifier: a linear probe on an ImageNet EfficientNet-Lite (timm).

`artifact.py` is the model on disk (card, weights, export, production pointer), `scoring.py` the one scoring
path, `train.py` and `gate.py` training and promotion. `fic train`, `fic predict` and the DVC stages
(`python -m fic_assets.defs.model.stages`) call the same functions as the assets.
"""
