"""Progress bars for a person waiting at a terminal: `fic train`, `fic predict`, `fic demo`, the first Label Studio
install.

On stderr, so stdout keeps the results (`fic predict`'s CSV); drawn only when stderr is a terminal (tqdm's
disable=None), so pipes, log files, CI and Dagster runs get nothing extra.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def bar(iterable: Iterable | None = None, **options: Any) -> tqdm:
    """A tqdm bar on the current sys.stderr, off when it is not a terminal; options as tqdm's (desc, total, unit)."""
    return tqdm(iterable, file=sys.stderr, disable=None, dynamic_ncols=True, **options)


def say(message: str) -> None:
    """A line on stdout that leaves the bars below it intact (tqdm clears and redraws them)."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()
