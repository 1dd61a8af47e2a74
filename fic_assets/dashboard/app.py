"""The analysts' dashboard (Streamlit script; `fic dashboard` runs it): brands, worn share with its uncertainty,
example images, prices over time, colours, the model, downloads of what is on screen.

It reads the current analytics snapshot (FIC_ANALYTICS_DIR; fic_assets/defs/analytics/snapshot.py), never the live
DuckDB file. The snapshot is loaded once per snapshot version and shared by every session; a newer snapshot is
picked up on the next interaction. Pages (sidebar, or ?page=overview|brand|model&brand=<slug> in the URL):
overview, brand, model. Anything that goes wrong shows a message, never a traceback.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from fic_assets.dashboard import views
from fic_assets.defs.analytics import summary
from fic_assets.defs.analytics.snapshot import (
    Snapshot, SnapshotNotFound, analytics_dir, current_version, open_snapshot, parquet_bytes,
)

PAGES = {"overview": "Brand overview", "brand": "Brand", "model": "Model"}
THUMBNAILS_PER_ROW = 6


@dataclass
class Opened:
    """The snapshot every session reads: its DuckDB connection serves one page at a time (lock)."""

    key: tuple[str, str | None]
    snap: Snapshot
    overview: pd.DataFrame
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False
    totals: dict = field(default_factory=dict)  # (brands shown, categories) -> overview_totals: later visitors reuse it
    by_category: dict = field(default_factory=dict)  # categories chosen -> brand_overview over them
    category_labels: dict | None = None  # views.category_options, read once

    def totals_of(self, rows: pd.DataFrame, categories: tuple[str, ...] | None = None) -> dict:
        key = (tuple(rows["slug"]), categories)
        if key not in self.totals:
            if len(self.totals) >= 64:
                self.totals.pop(next(iter(self.totals)))
            self.totals[key] = summary.overview_totals(self.snap, rows, None if categories is None else list(categories))
        return self.totals[key]

    def categories(self) -> dict:
        if self.category_labels is None:
            self.category_labels = views.category_options(self.snap)
        return self.category_labels

    def overview_of(self, categories: tuple[str, ...] | None) -> pd.DataFrame:
        """The overview, or with categories chosen every brand's numbers over only those pieces (recomputed by
        summary.brand_overview: the worn share and its interval from the filtered counts)."""
        if categories is None:
            return self.overview
        if categories not in self.by_category:
            if len(self.by_category) >= 32:
                self.by_category.pop(next(iter(self.by_category)))
            self.by_category[categories] = summary.brand_overview(self.snap, list(categories))
        return self.by_category[categories]


@st.cache_resource
def opened_holder() -> dict:
    """One per dashboard process: the open snapshot (`current`), swapped under `swap` when CURRENT moves."""
    return {"current": None, "swap": threading.Lock()}


def opened(root: Path) -> Opened:
    """The current snapshot under root, opened once for every session. When CURRENT names a newer one, it is
    opened and the old one closed (once no page uses it), which releases its lock so `prune` can delete it."""
    key = (str(root), current_version(root))
    holder = opened_holder()
    with holder["swap"]:
        old = holder["current"]
        if old is not None and old.key == key:
            return old
        snap = open_snapshot(root)  # SnapshotNotFound when there is none
        try:
            # The per-brand numbers the writer computed (summary.brand_overview of this snapshot): no scan of images.
            overview = snap.table("brand_summary")
        except Exception:
            snap.close()
            raise
        holder["current"] = Opened(key, snap, overview)
    if old is not None:
        with old.lock:
            old.closed = True
            old.snap.close()
    return holder["current"]


def downloads(frame: pd.DataFrame, name: str) -> None:
    """CSV and Parquet of exactly the frame on screen."""
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("Download CSV", frame.to_csv(index=False).encode("utf-8"), file_name=f"{name}.csv",
                         mime="text/csv", key=f"csv-{name}", on_click="ignore")
    right.download_button("Download Parquet", parquet_bytes(frame), file_name=f"{name}.parquet",
                          mime="application/vnd.apache.parquet", key=f"parquet-{name}", on_click="ignore")


def overview_page(current: Opened) -> None:
    snap, everything = current.snap, current.overview
    st.title("Brand overview")
    st.caption(summary.model_caveat(snap.model))
    if everything.empty:
        st.info("The snapshot has no brands yet: materialize `brands` and crawl them (`scripts/demo` does it all); "
                "the next analytics snapshot will list them.")
        return
    names = dict(zip(everything["slug"], everything["name"].astype(str)))
    with st.sidebar:
        st.subheader("Filters")
        chosen = st.multiselect("Brands", list(names), format_func=lambda slug: names[slug], key="filter_brands",
                                placeholder="all brands")
        labels = current.categories()
        categories = None
        if labels:
            picked = st.multiselect("Categories", list(labels), format_func=labels.get, key="filter_categories",
                                    placeholder="all categories",
                                    help="the shop's category (its breadcrumb, else the listing): every number is "
                                         "recomputed over the pieces in these categories and their images")
            categories = tuple(picked) or None
        else:
            st.caption("No piece in this snapshot has a category (the shop's pages gave none): no category filter.")
        overview = current.overview_of(categories)
        # The slider's ends stay those of every brand, so choosing a category does not move a band already set.
        prices = views.price_range(everything)
        band = None
        if prices is None:
            st.caption("No brand has a price yet: no price band filter.")
        elif prices[0] < prices[1]:
            band = st.slider("Price band (brand's median price)", min_value=prices[0], max_value=prices[1],
                             value=prices, key="filter_price")
            if tuple(band) == prices:
                band = None  # the whole range also keeps the brands without a price
        sort = st.selectbox("Sort by", list(views.SORTS), key="sort")
    rows = views.filter_overview(overview, chosen, band, sort)
    totals = current.totals_of(rows, categories) if not rows.empty else None
    if totals is not None:
        cols = st.columns(4)
        cols[0].metric("Brands shown", f"{len(rows)} of {len(everything)}")
        cols[1].metric("Worn share (all shown)", summary.format_share(totals["worn_share"]),
                       help="pooled over the shown brands' predicted images, corrected for the model's error")
        cols[2].metric("95 % interval", summary.format_interval(totals["worn_share_low"], totals["worn_share_high"]))
        cols[3].metric("Images predicted", f"{totals['predicted']:,} of {totals['images']:,}")
    table = views.overview_table(rows)
    if table.empty:
        st.warning("No brand matches these filters.")
    else:
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "worn share %": st.column_config.NumberColumn(format="%.1f %%", help="corrected for the model's error"),
            "interval low %": st.column_config.NumberColumn(format="%.1f %%"),
            "interval high %": st.column_config.NumberColumn(format="%.1f %%"),
            "packshot flag agrees %": st.column_config.NumberColumn(
                format="%.1f %%", help="share of the shop's packshots (with a prediction) the model calls not worn"),
            "price median": st.column_config.NumberColumn(format="%.2f"),
            "price spread (p75 − p25)": st.column_config.NumberColumn(format="%.2f"),
            "price p25": st.column_config.NumberColumn(format="%.2f"),
            "price p75": st.column_config.NumberColumn(format="%.2f"),
        })
        st.caption("Click a column header to sort; open a brand on the Brand page (sidebar).")
    downloads(table, "brand-overview")


def thumbnails(frame: pd.DataFrame, empty: str) -> None:
    if frame.empty:
        st.caption(empty)
        return
    for start in range(0, len(frame), THUMBNAILS_PER_ROW):
        cols = st.columns(THUMBNAILS_PER_ROW)
        for col, row in zip(cols, frame.iloc[start:start + THUMBNAILS_PER_ROW].itertuples(index=False)):
            caption = f"P(worn) {row.score:.2f}" + (" · shop packshot" if row.is_packshot else "")
            if isinstance(row.thumbnail_url, str) and row.thumbnail_url:
                col.image(row.thumbnail_url, caption=caption, width="stretch")
            else:
                col.warning(f"No thumbnail URL for this image ({caption}): "
                            + (f"`{row.image_url}` is no http(s) URL" if row.image_url else "its URL is empty"))
            if isinstance(row.label_studio_task_url, str) and row.label_studio_task_url:
                col.link_button("Open in Label Studio", row.label_studio_task_url)


def brand_page(snap, overview: pd.DataFrame) -> None:
    st.title("Brand")
    if overview.empty:
        st.info("The snapshot has no brands yet: nothing to show per brand.")
        return
    names = dict(zip(overview["slug"], overview["name"].astype(str)))
    wanted = st.query_params.get("brand")
    if "brand" not in st.session_state or st.session_state["brand"] not in names:
        st.session_state["brand"] = wanted if wanted in names else next(iter(names))
    slug = st.selectbox("Brand", list(names), format_func=lambda s: names[s], key="brand")
    st.query_params["brand"] = slug
    row = views.brand_row(overview, slug)
    st.subheader(views.escape_markdown(row["name"]))
    cols = st.columns(5)
    cols[0].metric("Worn share", summary.format_share(row["worn_share"]),
                   help="corrected for the model's error" if row["worn_share_corrected"] else "not corrected: no usable model")
    cols[1].metric("95 % interval", summary.format_interval(row["worn_share_low"], row["worn_share_high"]))
    cols[2].metric("Pieces / images", f"{row['pieces']:,} / {row['images']:,}")
    cols[3].metric("Price median", summary.format_price(row["price_median"], row["currency"]))
    cols[4].metric("Packshot flag agrees", summary.format_share(row["packshot_agreement"]),
                   help=f"of {row['packshot_flags']} shop packshots with a prediction, the share the model calls not worn")
    if row["predicted"] == 0:
        st.info(f"No predictions for this brand yet ({row['images']} images, {row['errors']} failed): its images "
                "get predictions in the next `brand_predictions` run (the automation starts it after a crawl or a "
                "promotion), and show here with the next snapshot.")
    prefixes = views.public_url_prefixes()
    examples = {kind: views.with_public_links(frame, prefixes)
                for kind, frame in summary.brand_examples(snap, slug).items()}
    tabs = st.tabs(["Worn", "Not worn", "Least certain", "Prices", "Colours"])
    with tabs[0]:
        st.caption("What the model is surest shows the garment worn.")
        thumbnails(examples["worn"], "No image of this brand is predicted worn.")
        downloads(views.example_table(examples["worn"]), f"{slug}-worn")
    with tabs[1]:
        st.caption("What the model is surest shows the garment alone (packshot, flat lay).")
        thumbnails(examples["not_worn"], "No image of this brand is predicted not worn.")
        downloads(views.example_table(examples["not_worn"]), f"{slug}-not-worn")
    with tabs[2]:
        st.caption("The images the model is least sure of, with their Label Studio task where one is open: "
                   "labelling them helps the model most.")
        thumbnails(examples["least_certain"], "No predicted image of this brand.")
        downloads(views.example_table(examples["least_certain"]), f"{slug}-least-certain")
    with tabs[3]:
        history = summary.price_history(snap, slug)
        if history.empty:
            st.caption("No price recorded for this brand.")
        else:
            st.line_chart(history.set_index("day")[["price_median", "price_p25", "price_p75"]])
            st.caption("Daily median (and p25 / p75) of the prices seen: a row when a piece is new or its price moved.")
            st.dataframe(history, hide_index=True, width="stretch")
        downloads(history, f"{slug}-price-history")
    with tabs[4]:
        colours = views.colour_table(snap, slug)
        if colours.empty:
            st.caption("No piece of this brand has a colour.")
        else:
            st.bar_chart(colours.set_index("colour")["pieces"], horizontal=True)
            st.dataframe(colours, hide_index=True, width="stretch")
        downloads(colours, f"{slug}-colours")


def model_page(snap) -> None:
    st.title("Model")
    model = snap.model or {}
    st.write(summary.model_caveat(model))
    if not model.get("version"):
        st.info(model.get("message") or "No production model is recorded in this snapshot.")
        return
    cv = model.get("cv") or {}
    cols = st.columns(3)
    cols[0].metric("Production version", model["version"])
    f1 = cv.get("f1")
    cols[1].metric("Cross-validated F1", "—" if f1 is None else f"{f1:.3f}"
                   + (f" ± {cv['f1_std']:.3f}" if cv.get("f1_std") is not None else ""),
                   help=(f"range {cv['f1_min']:.3f}–{cv['f1_max']:.3f}" if cv.get("f1_min") is not None
                         and cv.get("f1_max") is not None else None))
    cols[2].metric("Labels used", sum((model.get("labels_used") or {}).values()))
    matrix = views.confusion_table(model)
    st.subheader("Confusion matrix (out-of-fold, every labelled image)")
    if matrix is None:
        st.info("The model's card has no confusion matrix: worn shares are not corrected for its error.")
    else:
        st.dataframe(matrix, hide_index=True)
        downloads(matrix, "model-confusion-matrix")
    st.subheader("Numbers")
    table = views.model_table(model)
    st.dataframe(table, hide_index=True, width="stretch")
    downloads(table, "model")


def main() -> None:
    st.set_page_config(page_title="fic: brands worn or not", layout="wide")
    root = analytics_dir()
    try:
        with st.spinner("Loading the analytics snapshot …"):
            current = opened(root)
    except SnapshotNotFound as error:
        st.title("fic dashboard")
        st.info(f"No analytics snapshot yet. {error}")
        return
    wanted = st.query_params.get("page", "overview")
    if "page" not in st.session_state:
        st.session_state["page"] = wanted if wanted in PAGES else "overview"
    page = st.sidebar.radio("Page", list(PAGES), format_func=PAGES.get, key="page")
    st.query_params["page"] = page
    if page != "brand" and "brand" in st.query_params:
        del st.query_params["brand"]
    snap, overview = current.snap, current.overview
    st.sidebar.caption(f"Snapshot {snap.version} ({snap.created_at:%Y-%m-%d %H:%M} UTC)")
    with current.lock:
        if current.closed:  # a newer snapshot replaced this one since this run looked: read that one
            st.rerun()
        try:
            {"overview": lambda: overview_page(current), "brand": lambda: brand_page(snap, overview),
             "model": lambda: model_page(snap)}[page]()
        except Exception as error:  # noqa: BLE001  a message, never a traceback, for the analyst
            st.error(f"This page could not be shown: {type(error).__name__}: {error}. The snapshot at {snap.path} "
                     "may be from another version of fic; the next `analytics_snapshot` run writes a new one.")


main()
