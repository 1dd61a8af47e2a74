"""matplotlib for files only (no display on servers and in tests), imported on first plot.

The defs folder imports every module under it when the code location loads; matplotlib costs most of a second,
so the modules that plot (the model's evaluation, the brand report) reach pyplot through here.
"""

from types import ModuleType


def pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
