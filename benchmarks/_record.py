"""Print a benchmark's numbers and keep them in benchmarks/results/<name>.json (the README quotes them)."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def record(name: str, numbers: dict) -> None:
    entry = {
        "benchmark": name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        **numbers,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
    for key, value in numbers.items():
        print(f"{name}: {key} = {value}")
