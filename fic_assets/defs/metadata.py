"""Metadata helpers shared by the domains' assets."""

import base64
from pathlib import Path


def png_markdown(path: Path, title: str) -> str:
    """An image inline in Dagster's metadata panel (markdown with a data URI)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})"
