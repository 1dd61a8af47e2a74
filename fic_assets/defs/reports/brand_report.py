"""The static brand report: one HTML page with PNG plots, per brand, from the platform's DuckDB.

Plain functions over a DuckDB connection (no Dagster): `brand_summary` computes the numbers, `write_report`
writes index.html plus worn_share.png, prices.png and colours.png into a folder that can be moved or zipped
(relative image links, inline CSS, no JavaScript, no external URLs). Every SQL statement is parameterized.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from fic_assets.platform.plotting import pyplot
from fic_assets.defs.model.classes import NEGATIVE, POSITIVE

# fic_assets.defs.model.scoring.ERROR_LABEL; not imported from there because that module imports OpenVINO.
ERROR_LABEL = "error"

TEMPLATE = "brand_report.html.j2"
INDEX_FILE = "index.html"
PLOT_FILES = {"worn_share": "worn_share.png", "prices": "prices.png", "colours": "colours.png"}
TOP_COLOURS = 5  # per brand, in the summary and the table
PLOT_COLOURS = 8  # colours named in colours.png; the rest is "other"
MISSING = "—"

SUMMARY_COLUMNS = (
    "slug", "name", "pieces", "images", "predicted", "errors", "worn_share",
    "price_min", "price_p25", "price_median", "price_p75", "price_max", "currency", "top_colours",
    "packshot_flags", "packshot_agreement", "model_versions",
)
_COUNT_COLUMNS = ("pieces", "images", "predicted", "errors", "packshot_flags")
_PRICE_COLUMNS = ("price_min", "price_p25", "price_median", "price_p75", "price_max")


@dataclass(frozen=True)
class ReportResult:
    index_html: Path
    plots: dict[str, Path]  # name (worn_share, prices, colours) -> PNG path
    summary: pd.DataFrame
    brands: int


# --- numbers -----------------------------------------------------------------------------------------

_PIECE_STATS = """
    SELECT brand_slug, count(*) AS pieces, min(price) AS price_min, quantile_cont(price, ?) AS price_p25,
           quantile_cont(price, ?) AS price_median, quantile_cont(price, ?) AS price_p75, max(price) AS price_max
    FROM pieces GROUP BY brand_slug"""

# One row per image of a brand (images joined to pieces on item_id) with its prediction, if any.
_IMAGE_STATS = """
    SELECT p.brand_slug,
           count(*) AS images,
           count(*) FILTER (WHERE pr.label = ? OR pr.label = ?) AS predicted,
           count(*) FILTER (WHERE pr.label = ?) AS worn,
           count(*) FILTER (WHERE pr.label = ?) AS errors,
           count(*) FILTER (WHERE i.is_packshot AND (pr.label = ? OR pr.label = ?)) AS packshot_flags,
           count(*) FILTER (WHERE i.is_packshot AND pr.label = ?) AS packshot_not_worn
    FROM images i
    JOIN pieces p ON p.item_id = i.item_id
    LEFT JOIN predictions pr ON pr.image_url = i.image_url
    GROUP BY p.brand_slug"""

_MODEL_VERSIONS = """
    SELECT DISTINCT p.brand_slug, pr.model_version
    FROM predictions pr
    JOIN images i ON i.image_url = pr.image_url
    JOIN pieces p ON p.item_id = i.item_id"""

_CURRENCIES = """
    SELECT brand_slug, currency, count(*) AS n FROM pieces WHERE currency IS NOT NULL GROUP BY brand_slug, currency"""

# Blank colours count as missing, like NULL.
_COLOURS = """
    SELECT brand_slug, colour, count(*) AS n FROM pieces
    WHERE colour IS NOT NULL AND length(trim(colour)) > 0
    GROUP BY brand_slug, colour"""


def _colour_counts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """brand_slug, colour, n; sorted by brand, count desc, colour (so ties read alphabetically)."""
    frame = con.execute(_COLOURS).df()
    return frame.sort_values(["brand_slug", "n", "colour"], ascending=[True, False, True], ignore_index=True)


def _summary(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary and the full per-brand colour counts (the colours plot needs more than the top 5)."""
    brands = con.execute("SELECT slug, name FROM brands").df()
    pieces = con.execute(_PIECE_STATS, [0.25, 0.5, 0.75]).df()  # linear interpolation, like numpy
    images = con.execute(
        _IMAGE_STATS, [POSITIVE, NEGATIVE, POSITIVE, ERROR_LABEL, POSITIVE, NEGATIVE, NEGATIVE]
    ).df()
    versions = con.execute(_MODEL_VERSIONS).fetchall()
    currencies = con.execute(_CURRENCIES).df()
    colours = _colour_counts(con)

    frame = brands.merge(pieces, how="left", left_on="slug", right_on="brand_slug").drop(columns="brand_slug")
    frame = frame.merge(images, how="left", left_on="slug", right_on="brand_slug").drop(columns="brand_slug")
    for column in (*_COUNT_COLUMNS, "worn", "packshot_not_worn"):
        frame[column] = frame[column].fillna(0).astype("int64")

    for column in _PRICE_COLUMNS:
        frame[column] = frame[column].astype("float64")  # NaN when the brand has no priced piece

    # Shares are NaN when there is nothing to share out: 0/0 is "unknown", not 0 %.
    frame["worn_share"] = [worn / predicted if predicted else math.nan
                           for worn, predicted in zip(frame["worn"], frame["predicted"])]
    frame["packshot_agreement"] = [agree / flags if flags else math.nan
                                   for agree, flags in zip(frame["packshot_not_worn"], frame["packshot_flags"])]

    # Most common currency; a tie goes to the alphabetically first so reruns agree.
    top_currency = (currencies.sort_values(["brand_slug", "n", "currency"], ascending=[True, False, True])
                    .drop_duplicates("brand_slug").set_index("brand_slug")["currency"])
    # object dtype: pandas 3 would turn None into NaN in a str column.
    frame["currency"] = pd.Series([top_currency.get(slug) for slug in frame["slug"]], dtype="object")

    top_colours: dict[str, list[tuple[str, int]]] = {}
    for slug, colour, n in colours.itertuples(index=False):
        listed = top_colours.setdefault(slug, [])
        if len(listed) < TOP_COLOURS:
            listed.append((colour, int(n)))
    frame["top_colours"] = pd.Series([top_colours.get(slug, []) for slug in frame["slug"]], dtype="object")

    by_brand: dict[str, list[str]] = {}
    for slug, version in versions:
        by_brand.setdefault(slug, []).append(version)
    frame["model_versions"] = pd.Series([sorted(by_brand.get(slug, [])) for slug in frame["slug"]], dtype="object")

    # Most pieces first; equal counts by name as people read it (case-insensitive), then slug for stability.
    frame["_name_key"] = frame["name"].astype(str).str.casefold()
    frame = frame.sort_values(["pieces", "_name_key", "slug"], ascending=[False, True, True], ignore_index=True)
    return frame[list(SUMMARY_COLUMNS)], colours


def brand_summary(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per brand in `brands` (most pieces first, then name); columns SUMMARY_COLUMNS.

    A brand without pieces, images or predictions keeps its row with zero counts. Numbers that do not exist
    (worn_share with nothing predicted, prices of a brand without prices, packshot_agreement without flagged
    packshots) are NaN, so pd.isna() finds them; currency is None when no piece has one.
    """
    return _summary(con)[0]


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
    """Horizontal bar per brand: the share of its predicted images the model calls worn."""
    from matplotlib.ticker import PercentFormatter

    plt = pyplot()

    figure, axes = plt.subplots(figsize=(8, _height(len(shown))))
    axes.set_title(title)
    if shown.empty:
        _no_data(axes, "no brands yet")
    else:
        shares = [0.0 if pd.isna(share) else float(share) for share in shown["worn_share"]]
        axes.barh(range(len(shown)), shares, color="#4c72b0", height=0.7)
        for row, (share, predicted) in enumerate(zip(shown["worn_share"], shown["predicted"])):
            note = "no predictions" if not predicted else f"{share:.0%} of {predicted}"
            axes.text((0.0 if pd.isna(share) else share) + 0.01, row, note, va="center", fontsize=8)
        _brand_axis(axes, list(shown["name"]))
        axes.set_xlim(0, 1.2)  # room for the notes right of a 100 % bar
        axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_xlabel("images predicted worn")
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


def _swatch(colour: str, index: int) -> str:
    """The colour itself when its name is a CSS colour (black, navy, beige), else a palette colour."""
    from matplotlib.colors import CSS4_COLORS

    plt = pyplot()

    css = CSS4_COLORS.get(colour.casefold().replace(" ", "").replace("-", ""))
    return css or plt.get_cmap("tab20")(index % 20)


def plot_colours(shown: pd.DataFrame, colours: pd.DataFrame, path: Path, title: str) -> None:
    """Stacked horizontal bars: share of each brand's pieces (with a colour) per colour; top colours + other."""
    from matplotlib.ticker import PercentFormatter
    from matplotlib.transforms import blended_transform_factory

    plt = pyplot()

    figure, axes = plt.subplots(figsize=(9, _height(len(shown))))
    axes.set_title(title)
    counts = colours[colours["brand_slug"].isin(list(shown["slug"]))]
    if shown.empty:
        _no_data(axes, "no brands yet")
    else:
        totals = counts.groupby("brand_slug")["n"].sum()
        overall = counts.groupby("colour")["n"].sum()
        named = sorted(overall.index, key=lambda colour: (-int(overall[colour]), colour))[:PLOT_COLOURS]
        table = counts.pivot_table(index="brand_slug", columns="colour", values="n", aggfunc="sum", fill_value=0)
        slugs = list(shown["slug"])
        left = [0.0] * len(slugs)

        def share(slug: str, colour: str | None) -> float:
            total = int(totals.get(slug, 0))
            if not total:
                return 0.0
            if colour is None:  # other
                return 1.0 - sum(int(table.at[slug, c]) for c in named if c in table.columns) / total
            return int(table.at[slug, colour]) / total if slug in table.index and colour in table.columns else 0.0

        for index, colour in enumerate([*named, None]):
            widths = [share(slug, colour) for slug in slugs]
            if colour is None and not any(width > 1e-9 for width in widths):
                break  # no "other" segment anywhere: keep it out of the legend
            axes.barh(range(len(slugs)), widths, left=left, height=0.7, edgecolor="#555555", linewidth=0.4,
                      color="#dddddd" if colour is None else _swatch(colour, index),
                      hatch="//" if colour is None else None, label="other" if colour is None else _label(colour))
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


def _prices(con: duckdb.DuckDBPyConnection, slugs: list[str]) -> dict[str, list[float]]:
    rows = con.execute(
        "SELECT brand_slug, price FROM pieces WHERE price IS NOT NULL AND list_contains(?, brand_slug)", [slugs]
    ).fetchall()
    prices: dict[str, list[float]] = {}
    for slug, price in rows:
        prices.setdefault(slug, []).append(float(price))
    return prices


# --- HTML --------------------------------------------------------------------------------------------------


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_share(value) -> str:
    return MISSING if _missing(value) else f"{value * 100:.1f} %"


def format_price(value, currency: str | None) -> str:
    if _missing(value):
        return MISSING
    return f"{value:,.2f} {currency}" if currency else f"{value:,.2f}"


def format_colours(colours: list[tuple[str, int]]) -> str:
    return ", ".join(f"{colour} {count}" for colour, count in colours) if colours else MISSING


def _row(record: dict) -> dict:
    currency = None if _missing(record["currency"]) else record["currency"]
    return {
        "slug": record["slug"],
        "name": record["name"],
        "pieces": f"{record['pieces']:,}",
        "images": f"{record['images']:,}",
        "predicted": f"{record['predicted']:,}",
        "errors": f"{record['errors']:,}",
        "worn_share": format_share(record["worn_share"]),
        "prices": [format_price(record[column], currency) for column in _PRICE_COLUMNS],
        "top_colours": format_colours(record["top_colours"]),
        "packshot_flags": f"{record['packshot_flags']:,}",
        "packshot_agreement": format_share(record["packshot_agreement"]),
        "model_versions": ", ".join(record["model_versions"]) or MISSING,
    }


def _environment() -> Environment:
    # select_autoescape() alone keys on .html/.htm/.xml endings and would leave "*.html.j2" unescaped.
    return Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                       autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=True))


def render_html(summary: pd.DataFrame, plots: list[dict], generated_at: datetime, shown: int) -> str:
    model_versions = sorted({version for versions in summary["model_versions"] for version in versions})
    records = summary.to_dict("records")
    return _environment().get_template(TEMPLATE).render(
        title="Brand report",
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        generated_iso=generated_at.isoformat(timespec="seconds"),
        model_versions=model_versions,
        plots=plots,
        rows=[_row(record) for record in records],
        brands=len(records),
        shown=shown,
        totals={column: f"{int(summary[column].sum()):,}" for column in ("pieces", "images", "predicted", "errors")},
    )


def write_report(con: duckdb.DuckDBPyConnection, out_dir: str | Path, generated_at: datetime | None = None,
                 max_plot_brands: int = 40) -> ReportResult:
    """Write out_dir/index.html and its PNG plots; the plots show the max_plot_brands brands with most pieces.

    PNGs are written before index.html, each atomically, so a browser never sees a page pointing at a plot
    that is not there yet or a half-written file.
    """
    if max_plot_brands < 1:
        raise ValueError(f"max_plot_brands must be at least 1, got {max_plot_brands}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generated_at = generated_at or datetime.now(timezone.utc)

    summary, colours = _summary(con)
    shown = summary.head(max_plot_brands)
    brands = len(summary)
    if brands > len(shown):
        scope = f"Top {len(shown)} of {brands} brands by pieces; the table below lists all of them."
    else:
        scope = f"All {brands} brand{'s' if brands != 1 else ''}."

    paths = {name: out_dir / file for name, file in PLOT_FILES.items()}
    plot_worn_share(shown, paths["worn_share"], "Worn share per brand")
    plot_prices(shown, _prices(con, list(shown["slug"])), paths["prices"], "Prices per brand")
    plot_colours(shown, colours, paths["colours"], "Colours per brand")

    plots = [
        {"src": PLOT_FILES["worn_share"], "title": "Worn share",
         "caption": "Share of each brand's predicted images that the model calls worn "
                    "(images whose prediction failed are left out). " + scope},
        {"src": PLOT_FILES["prices"], "title": "Prices",
         "caption": "Current prices of each brand's pieces (box: middle half, line: median, whiskers: "
                    "1.5 × the box, dots: outliers). " + scope},
        {"src": PLOT_FILES["colours"], "title": "Colours",
         "caption": f"Share of each brand's pieces per colour: the {PLOT_COLOURS} most common colours of "
                    "the plotted brands, the rest as other; pieces without a colour are left out. " + scope},
    ]
    index = out_dir / INDEX_FILE
    write_atomic(index, render_html(summary, plots, generated_at, len(shown)).encode("utf-8"))
    return ReportResult(index_html=index, plots=paths, summary=summary, brands=brands)


def top_brands_markdown(summary: pd.DataFrame, limit: int = 20) -> str:
    """The first `limit` brands of the summary as a markdown table (the asset's metadata panel)."""
    rows = "\n".join(
        f"| {str(row.name).replace('|', '/')} | {row.pieces} | {row.images} | "
        f"{'—' if row.predicted == 0 else f'{row.worn_share:.0%}'} |"
        for row in summary.head(limit).itertuples()
    )
    return "| brand | pieces | images | worn share |\n|---|---:|---:|---:|\n" + rows

