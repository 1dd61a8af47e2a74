"""The worn / not_worn image classifier: a linear probe on an ImageNet EfficientNet-Lite (timm).

`artifact.py` is the model on disk (card, weights, export, publishing, the production pointer) that training
and inference both use, `scoring.py` the one scoring path, `train.py` training (a candidate published as
models/<version>/), `gate.py` the quality gate before promotion. Inference never imports `train.py`.
`fic train`, `fic predict` and the DVC stages (`python -m fic_assets.defs.model.stages`) call the same
functions as the assets.
"""
