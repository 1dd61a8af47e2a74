"""What each dashboard page shows, as plain frames from an open snapshot (testable without Streamlit).

The numbers come from the shared summary functions (fic_assets.defs.analytics.summary), so the dashboard and the
static report agree; this module only picks, filters, sorts and names the columns an analyst reads. Each *_table
function returns the frame that is on screen, which is also what the CSV / Parquet download buttons offer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import pandas as pd

from fic_assets.defs.analytics import summary

# The overview's columns as the analyst reads them (and downloads them): numbers stay numbers so the table sorts
# by value; shares are in percent.
OVERVIEW_DISPLAY = {
    "name": "brand",
    "worn_share_pct": "worn share %",
    "worn_share_low_pct": "interval low %",
    "worn_share_high_pct": "interval high %",
    "pieces": "pieces",
    "images": "images",
    "predicted": "predicted",
    "price_median": "price median",
    "price_iqr": "price spread (p75 − p25)",
    "price_p25": "price p25",
    "price_p75": "price p75",
    "currency": "currency",
    "top_colours": "top colours",
    "top_categories": "top categories",
    "packshot_agreement_pct": "packshot flag agrees %",
    "slug": "slug",
}
# Where the snapshot's links name a service the analyst's browser cannot reach (in the compose stack:
# http://label-studio:8080, http://demo-shop:8765, the container host names), the address the browser reaches it
# at: "internal=public" pairs, comma-separated. Unset (a dashboard on the platform's own machine): links as stored.
PUBLIC_URLS_VARIABLE = "FIC_DASHBOARD_PUBLIC_URLS"
LINK_COLUMNS = ("thumbnail_url", "label_studio_task_url")

SORTS = {
    "most pieces": ("pieces", False),
    "worn share, highest first": ("worn_share", False),
    "worn share, lowest first": ("worn_share", True),
    "widest interval first": ("interval_width", False),
    "price median, highest first": ("price_median", False),
    "price median, lowest first": ("price_median", True),
    "name": ("name_key", True),
}


def _pct(series: pd.Series) -> pd.Series:
    return (series.astype("float64") * 100).round(1)


def price_range(overview: pd.DataFrame) -> tuple[float, float] | None:
    """The lowest and highest brand median price (the price band slider's ends); None without any price."""
    medians = overview["price_median"].dropna()
    if medians.empty:
        return None
    return float(math.floor(medians.min())), float(math.ceil(medians.max()))


def category_options(snapshot) -> dict[str, str]:
    """{filter value: label} of the categories in the snapshot's pieces, most pieces first, then "no category given"
    (summary.NO_CATEGORY) when some piece has none; {} when no piece has a category, or the snapshot was written
    before pieces had one (then the dashboard shows no category filter)."""
    columns = ((snapshot.manifest.get("tables") or {}).get("pieces") or {}).get("columns") or []
    if "category" not in columns:
        return {}
    counts = summary.category_counts(snapshot)
    if counts["category"].notna().sum() == 0:
        return {}
    return {(summary.NO_CATEGORY if pd.isna(category) else str(category)):
            f"{'no category given' if pd.isna(category) else category} ({int(pieces):,} pieces)"
            for category, pieces in zip(counts["category"], counts["pieces"])}


def filter_overview(overview: pd.DataFrame, brands: list[str] | None = None,
                    price_band: tuple[float, float] | None = None, sort: str = "most pieces") -> pd.DataFrame:
    """The overview rows on screen: only `brands` (slugs; None or empty = all), only brands whose median price lies
    in price_band (inclusive; brands without a price drop out once a band narrower than every price is chosen),
    sorted by SORTS[sort] (ties by name, then slug)."""
    frame = overview
    if brands:
        frame = frame[frame["slug"].isin(brands)]
    if price_band is not None:
        low, high = price_band
        frame = frame[frame["price_median"].between(low, high)]
    column, ascending = SORTS[sort]
    frame = frame.assign(name_key=frame["name"].astype(str).str.casefold(),
                         interval_width=frame["worn_share_high"] - frame["worn_share_low"])
    frame = frame.sort_values([column, "name_key", "slug"], ascending=[ascending, True, True], na_position="last",
                              kind="stable")
    return frame.drop(columns=["name_key", "interval_width"]).reset_index(drop=True)


def overview_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The filtered overview rows in OVERVIEW_DISPLAY's columns and names."""
    table = pd.DataFrame({
        "name": rows["name"].astype(object),
        "worn_share_pct": _pct(rows["worn_share"]),
        "worn_share_low_pct": _pct(rows["worn_share_low"]),
        "worn_share_high_pct": _pct(rows["worn_share_high"]),
        "pieces": rows["pieces"], "images": rows["images"], "predicted": rows["predicted"],
        "price_median": rows["price_median"],
        "price_iqr": (rows["price_p75"] - rows["price_p25"]).astype("float64"),
        "price_p25": rows["price_p25"], "price_p75": rows["price_p75"],
        "currency": rows["currency"], "top_colours": rows["top_colours"],
        # A snapshot written before categories has no such column: an empty cell, not an error.
        "top_categories": rows["top_categories"] if "top_categories" in rows.columns else pd.Series("", index=rows.index, dtype=object),
        "packshot_agreement_pct": _pct(rows["packshot_agreement"]),
        "slug": rows["slug"],
    })
    return table.rename(columns=OVERVIEW_DISPLAY).reset_index(drop=True)


def brand_row(overview: pd.DataFrame, slug: str) -> dict | None:
    rows = overview[overview["slug"] == slug]
    return None if rows.empty else rows.iloc[0].to_dict()


def colour_table(snapshot, slug: str) -> pd.DataFrame:
    """colour (the English family), pieces, shop's words of one brand, most pieces first."""
    colours = summary.colour_counts(snapshot, [slug])
    return pd.DataFrame({"colour": colours["colour_family"], "pieces": colours["pieces"],
                         "shop's words": colours["shop_words"]}).reset_index(drop=True)


def example_table(examples: pd.DataFrame) -> pd.DataFrame:
    """One example group (summary.brand_examples) as listed under its thumbnails and downloaded."""
    return pd.DataFrame({
        "thumbnail": examples["thumbnail_url"], "label": examples["label"], "P(worn)": examples["score"].round(3),
        "human label": examples["human_label"], "shop's packshot flag": examples["is_packshot"],
        "Label Studio task": examples["label_studio_task_url"], "item_id": examples["item_id"],
        "image_url": examples["image_url"],
    }).reset_index(drop=True)


def confusion_table(model: dict) -> pd.DataFrame | None:
    """The cross-validated confusion matrix as a 2×2 table (rows: the truth, columns: the model); None without one."""
    matrix = model.get("confusion_matrix") if model else None
    if not matrix:
        return None
    return pd.DataFrame({"truth": ["worn", "not worn"],
                         "model: worn": [matrix["tp"], matrix["fp"]],
                         "model: not worn": [matrix["fn"], matrix["tn"]]})


def model_table(model: dict) -> pd.DataFrame:
    """The production model's numbers as rows (what the model page lists and downloads)."""
    cv = model.get("cv") or {}
    errors = summary.ModelErrors.from_model(model)
    rows = [
        ("version", model.get("version")), ("promoted at", model.get("promoted_at")),
        ("architecture", model.get("arch")), ("trained at", model.get("trained_at")),
        ("threshold", model.get("threshold")),
        ("CV F1", cv.get("f1")), ("CV F1 spread (std)", cv.get("f1_std")), ("CV F1 min", cv.get("f1_min")),
        ("CV F1 max", cv.get("f1_max")), ("CV folds × repeats", f"{cv.get('folds')} × {cv.get('repeats')}"
                                         if cv.get("folds") else None),
        ("labelled images measured on", cv.get("n")), ("accuracy", cv.get("accuracy")),
        ("precision", cv.get("precision")), ("recall", cv.get("recall")), ("ROC AUC", cv.get("roc_auc")),
        ("sensitivity", model.get("sensitivity", errors.sensitivity if errors else None)),
        ("specificity", model.get("specificity", errors.specificity if errors else None)),
    ]
    rows += [(f"labels used: {label}", count) for label, count in (model.get("labels_used") or {}).items()]
    rows += [(f"human labels now: {label}", count) for label, count in (model.get("human_labels") or {}).items()]
    return pd.DataFrame({"what": [r[0] for r in rows],
                         "value": ["" if r[1] is None else str(r[1]) for r in rows]})


def escape_markdown(text: str) -> str:
    """Text shown literally where Streamlit reads Markdown (a brand name like `Levi's "501" / Ève` or `*Sale*`)."""
    return "".join("\\" + char if char in "\\`*_{}[]<>()#+-.!|~$:" else char for char in str(text))


def public_url_prefixes(environ: Mapping[str, str] = os.environ) -> list[tuple[str, str]]:
    """[(internal prefix, public prefix)] from FIC_DASHBOARD_PUBLIC_URLS; each prefix ends with "/" so that
    http://demo-shop:8765 never rewrites http://demo-shop:87650/. A malformed pair is a clear error at start."""
    pairs = []
    for entry in filter(None, (part.strip() for part in environ.get(PUBLIC_URLS_VARIABLE, "").split(","))):
        internal, sep, public = (side.strip() for side in entry.partition("="))
        if not sep or not internal.startswith(("http://", "https://")) or not public.startswith(("http://", "https://")):
            raise ValueError(f"{PUBLIC_URLS_VARIABLE}: {entry!r} is not an internal=public pair of http(s) URLs "
                             "(e.g. http://label-studio:8080=http://127.0.0.1:8080)")
        pairs.append((internal.rstrip("/") + "/", public.rstrip("/") + "/"))
    return pairs


def public_url(url: object, prefixes: list[tuple[str, str]]) -> object:
    """`url` as the analyst's browser reaches it (the first matching prefix rewritten); anything else unchanged."""
    if not isinstance(url, str):
        return url
    for internal, public in prefixes:
        if url.startswith(internal):
            return public + url[len(internal):]
    return url


def with_public_links(frame: pd.DataFrame, prefixes: list[tuple[str, str]]) -> pd.DataFrame:
    """The frame with its link columns (thumbnails, Label Studio tasks) as the browser reaches them."""
    if not prefixes:
        return frame
    frame = frame.copy()
    for column in LINK_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].map(lambda url: public_url(url, prefixes))
    return frame
