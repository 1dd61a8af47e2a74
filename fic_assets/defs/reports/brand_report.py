"""The static brand report: one HTML page with PNG plots, per brand, from the analytics snapshot.

Plain functions over an open snapshot (fic_assets.defs.analytics.snapshot.open_snapshot; no Dagster, never the live
DuckDB file): the numbers are fic_assets.defs.analytics.summary's (brand_overview, overview_totals, colour_counts,
model_caveat), the same functions the dashboard uses, so both show the same numbers. `write_report` writes
index.html plus worn_share.png, prices.png and colours.png into a folder that can be moved or zipped (relative
image links, inline CSS, no JavaScript, no external URLs).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from fic_assets.defs.analytics import summary as numbers
from fic_assets.defs.analytics.colours import OTHER, SWATCHES
from fic_assets.platform.plotting import pyplot

TEMPLATE = "brand_report.html.j2"
INDEX_FILE = "index.html"
PLOT_FILES = {"worn_share": "worn_share.png", "prices": "prices.png", "colours": "colours.png"}
PLOT_COLOURS = 10  # colour families named in colours.png; the rest is "other"
MISSING = numbers.MISSING


@dataclass(frozen=True)
class ReportResult:
    index_html: Path
    plots: dict[str, Path]  # name (worn_share, prices, colours) -> PNG path
    summary: pd.DataFrame   # summary.brand_overview of the snapshot
    totals: dict            # summary.overview_totals
    brands: int
    snapshot_version: str


# --- plots ---------------------------------------------------------------------------------------------


def _label(text: str, limit: int = 32) -> str:
    """A brand or colour name safe for a matplotlib label: one line, not too long, no mathtext."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")  # "$...$" would be parsed as mathtext (and can fail to render)


def _height(rows: int) -> float:
    return max(2.2, 1.0 + 0.32 * rows)


def _save(figure, path: Path) -> None:
    plt = pyplot()

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
    write_atomic(path, buffer.getvalue())


def _no_data(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, fontsize=12, color="#555555")
    axes.set_axis_off()


def _brand_axis(axes, names: list[str]) -> None:
    """Brands top to bottom in summary order (most pieces on top)."""
    axes.set_yticks(range(len(names)), [_label(name) for name in names])
    axes.set_ylim(len(names) - 0.5, -0.5)


def plot_worn_share(shown: pd.DataFrame, path: Path, title: str) -> None:
    """Horizontal bar per brand: its worn share (corrected for the model's error) with the 95 % interval."""
    from matplotlib.ticker import PercentFormatter

    plt = pyplot()

    figure, axes = plt.subplots(figsize=(8, _height(len(shown))))
    axes.set_title(title)
    if shown.empty:
        _no_data(axes, "no brands yet")
    else:
        shares = [0.0 if pd.isna(share) else float(share) for share in shown["worn_share"]]
        axes.barh(range(len(shown)), shares, color="#4c72b0", height=0.7)
        for row, (share, low, high, predicted) in enumerate(
                zip(shown["worn_share"], shown["worn_share_low"], shown["worn_share_high"], shown["predicted"])):
            if not predicted:
                axes.text(0.01, row, "no predictions", va="center", fontsize=8, color="#555555")
                continue
            axes.errorbar([share], [row], xerr=[[share - low], [high - share]], fmt="none", ecolor="#222222",
                          elinewidth=1, capsize=3)
            axes.text(max(high, share) + 0.015, row, f"{share:.0%} of {predicted:,}", va="center", fontsize=8)
        _brand_axis(axes, list(shown["name"]))
        axes.set_xlim(0, 1.25)  # room for the notes right of a 100 % bar
        axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_xlabel("images showing the garment worn (corrected for the model's error; bars: 95 % interval)")
        axes.grid(axis="x", alpha=0.3)
    _save(figure, path)


def plot_prices(shown: pd.DataFrame, prices: dict[str, list[float]], path: Path, title: str) -> None:
    """Box plot of piece prices per brand; a brand without prices says so instead of a box."""
    from matplotlib.transforms import blended_transform_factory

    plt = pyplot()

    figure, axes = plt.subplots(figsize=(8, _height(len(shown))))
    axes.set_title(title)
    if shown.empty:
        _no_data(axes, "no brands yet")
    else:
        rows = [row for row, slug in enumerate(shown["slug"]) if prices.get(slug)]
        if rows:
            axes.boxplot([prices[shown["slug"].iloc[row]] for row in rows], positions=rows, widths=0.6,
                         orientation="horizontal", manage_ticks=False, flierprops={"markersize": 3})
        # x in axes units, y in rows: the note sits at the left edge whatever the price range is.
        transform = blended_transform_factory(axes.transAxes, axes.transData)
        for row, slug in enumerate(shown["slug"]):
            if not prices.get(slug):
                axes.text(0.01, row, "no prices", va="center", fontsize=8, color="#555555", transform=transform)
        _brand_axis(axes, list(shown["name"]))
        currencies = {currency for currency in shown["currency"] if currency is not None and not pd.isna(currency)}
        axes.set_xlabel(f"price ({currencies.pop()})" if len(currencies) == 1
                        else "price (mixed currencies)" if currencies else "price")
        axes.grid(axis="x", alpha=0.3)
    _save(figure, path)


def plot_colours(shown: pd.DataFrame, colours: pd.DataFrame, path: Path, title: str) -> None:
    """Stacked horizontal bars: share of each brand's pieces (with a colour) per colour family (summary.colour_counts);
    the PLOT_COLOURS most common families of the plotted brands, the rest as other."""
    from matplotlib.ticker import PercentFormatter
    from matplotlib.transforms import blended_transform_factory

    plt = pyplot()

    figure, axes = plt.subplots(figsize=(9, _height(len(shown))))
    axes.set_title(title)
    counts = colours[colours["brand_slug"].isin(list(shown["slug"]))]
    if shown.empty:
        _no_data(axes, "no brands yet")
    else:
        totals = counts.groupby("brand_slug")["pieces"].sum()
        overall = counts[counts["colour_family"] != OTHER].groupby("colour_family")["pieces"].sum()
        named = sorted(overall.index, key=lambda family: (-int(overall[family]), family))[:PLOT_COLOURS]
        table = counts.pivot_table(index="brand_slug", columns="colour_family", values="pieces", aggfunc="sum", fill_value=0)
        slugs = list(shown["slug"])
        left = [0.0] * len(slugs)

        def share(slug: str, family: str | None) -> float:
            total = int(totals.get(slug, 0))
            if not total:
                return 0.0
            if family is None:  # other: unknown words and the families not named
                return 1.0 - sum(int(table.at[slug, f]) for f in named if f in table.columns) / total
            return int(table.at[slug, family]) / total if slug in table.index and family in table.columns else 0.0

        for family in [*named, None]:
            widths = [share(slug, family) for slug in slugs]
            if family is None and not any(width > 1e-9 for width in widths):
                break  # no "other" segment anywhere: keep it out of the legend
            axes.barh(range(len(slugs)), widths, left=left, height=0.7, edgecolor="#555555", linewidth=0.4,
                      color=SWATCHES[OTHER] if family is None else SWATCHES.get(family, SWATCHES[OTHER]),
                      hatch="//" if family is None else None, label=OTHER if family is None else family)
            left = [start + width for start, width in zip(left, widths)]
        transform = blended_transform_factory(axes.transAxes, axes.transData)
        for row, slug in enumerate(slugs):
            if not int(totals.get(slug, 0)):
                axes.text(0.01, row, "no colours", va="center", fontsize=8, color="#555555", transform=transform)
        _brand_axis(axes, list(shown["name"]))
        axes.set_xlim(0, 1)
        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_xlabel("share of the brand's pieces")
        if named:
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _save(figure, path)


# --- files -----------------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, then os.replace: a reader sees the old file or the whole new one.

    Unlike imageset.cache.atomic_write this makes the file world-readable (mkstemp creates 0600), because
    a report is meant to be served or opened by other users.
    """
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _prices(snapshot, slugs: list[str]) -> dict[str, list[float]]:
    frame = snapshot.sql("SELECT brand_slug, price FROM pieces WHERE price IS NOT NULL AND list_contains(?, brand_slug)", [slugs])
    return {slug: group.astype(float).tolist() for slug, group in frame.groupby("brand_slug")["price"]}


# --- HTML --------------------------------------------------------------------------------------------------


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _count(value) -> str:
    return f"{int(value):,}"


def _row(record: dict) -> dict:
    """One table row's cells, formatted (the totals row goes through here too)."""
    currency = None if _missing(record["currency"]) else record["currency"]
    predicted = int(record["predicted"])
    return {
        "slug": record["slug"],
        "name": record["name"],
        "pieces": _count(record["pieces"]),
        "images": _count(record["images"]),
        "predicted": _count(predicted),
        "errors": _count(record["errors"]),
        "worn_share": numbers.format_share(record["worn_share"]) if predicted else "no predictions",
        "worn_interval": numbers.format_interval(record["worn_share_low"], record["worn_share_high"]),
        "worn_raw": numbers.format_share(record["worn_share_raw"]),
        "price_median": numbers.format_price(record["price_median"], currency),
        "price_range": (MISSING if _missing(record["price_p25"]) else
                        f"{numbers.format_price(record['price_p25'], None)}–{numbers.format_price(record['price_p75'], None)}"),
        "top_colours": record["top_colours"] or MISSING,
        "packshot_flags": _count(record["packshot_flags"]),
        "packshot_agreement": numbers.format_share(record["packshot_agreement"]),
        # .get: a brand_summary of a snapshot written before categories has no such column.
        "top_categories": record.get("top_categories") or MISSING,
    }


def _environment() -> Environment:
    # select_autoescape() alone keys on .html/.htm/.xml endings and would leave "*.html.j2" unescaped.
    return Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                       autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=True))


def render_html(summary: pd.DataFrame, totals: dict, plots: list[dict], generated_at: datetime, snapshot) -> str:
    model_versions = sorted({v for text in summary["model_versions"] for v in str(text).split(", ") if v})
    return _environment().get_template(TEMPLATE).render(
        title="Brand report",
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        generated_iso=generated_at.isoformat(timespec="seconds"),
        snapshot_version=snapshot.version,
        model_versions=model_versions,
        caveat=numbers.model_caveat(snapshot.model),
        plots=plots,
        rows=[_row(record) for record in summary.to_dict("records")],
        brands=len(summary),
        totals=_row(totals),
    )


def write_report(snapshot, out_dir: str | Path, generated_at: datetime | None = None,
                 max_plot_brands: int = 40) -> ReportResult:
    """Write out_dir/index.html and its PNG plots from an open snapshot; the plots show the max_plot_brands brands
    with most pieces, the table all of them.

    PNGs are written before index.html, each atomically, so a browser never sees a page pointing at a plot
    that is not there yet or a half-written file.
    """
    if max_plot_brands < 1:
        raise ValueError(f"max_plot_brands must be at least 1, got {max_plot_brands}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generated_at = generated_at or datetime.now(timezone.utc)

    summary = numbers.brand_overview(snapshot)
    totals = numbers.overview_totals(snapshot, summary)
    shown = summary.head(max_plot_brands)
    brands = len(summary)
    if brands > len(shown):
        scope = f"Top {len(shown)} of {brands} brands by pieces; the table below lists all of them."
    else:
        scope = f"All {brands} brand{'s' if brands != 1 else ''}."

    paths = {name: out_dir / file for name, file in PLOT_FILES.items()}
    plot_worn_share(shown, paths["worn_share"], "Worn share per brand")
    plot_prices(shown, _prices(snapshot, list(shown["slug"])), paths["prices"], "Prices per brand")
    plot_colours(shown, numbers.colour_counts(snapshot, list(shown["slug"])), paths["colours"], "Colours per brand")

    plots = [
        {"src": PLOT_FILES["worn_share"], "title": "Worn share",
         "caption": "Share of each brand's images that show the garment worn, from the model's predictions corrected "
                    "for its measured error, with the 95 % interval (images whose prediction failed are left out). "
                    + scope},
        {"src": PLOT_FILES["prices"], "title": "Prices",
         "caption": "Current prices of each brand's pieces (box: middle half, line: median, whiskers: "
                    "1.5 × the box, dots: outliers). " + scope},
        {"src": PLOT_FILES["colours"], "title": "Colours",
         "caption": f"Share of each brand's pieces per colour, the shop's colour words mapped to one English "
                    f"vocabulary (schwarz, black → black; dunkelblau → navy): the {PLOT_COLOURS} most common colours of "
                    "the plotted brands, the rest and words not understood as other; pieces without a colour are left "
                    "out. " + scope},
    ]
    index = out_dir / INDEX_FILE
    write_atomic(index, render_html(summary, totals, plots, generated_at, snapshot).encode("utf-8"))
    return ReportResult(index_html=index, plots=paths, summary=summary, totals=totals, brands=brands,
                        snapshot_version=snapshot.version)


def top_brands_markdown(summary: pd.DataFrame, limit: int = 20) -> str:
    """The first `limit` brands of the summary as a markdown table (the asset's metadata panel)."""
    rows = "\n".join(
        f"| {str(row.name).replace('|', '/')} | {row.pieces} | {row.images} | "
        f"{'—' if row.predicted == 0 else f'{row.worn_share:.0%} ({row.worn_share_low:.0%}–{row.worn_share_high:.0%})'} |"
        for row in summary.head(limit).itertuples()
    )
    return "| brand | pieces | images | worn share (95 % interval) |\n|---|---:|---:|---:|\n" + rows
