"""The numbers analysts read, computed once for the static report and the dashboard alike (so they agree).

Every function takes an open snapshot (`fic_assets.defs.analytics.snapshot.open_snapshot`) or frames from it and
returns plain pandas frames / dicts; nothing here reads the live DuckDB file or needs Dagster.

    brand_overview(snapshot)       one row per brand (OVERVIEW_COLUMNS): pieces, images, worn share corrected for
                                   the model's error with its interval, prices, top colours and categories, packshot
                                   agreement; brand_overview(snapshot, categories) the same over only the pieces (and
                                   their images) in those categories, recomputed, brands without such pieces left out
    overview_totals(snapshot, overview)  the totals row (same columns; worn share pooled over every brand's images)
    category_counts(snapshot)      pieces and brands per category (the shop's breadcrumb; NULL: none given)
    colour_counts(snapshot, slugs) pieces per brand and colour family, with the shop's own words
    brand_examples(snapshot, slug) example images the model calls worn / not worn, and the least certain ones
    price_history(snapshot, slug)  a brand's daily median price over time
    model_caveat(model)            one sentence: how good the model is and on how many images that was measured

**Worn share and its interval.** The model's label of an image is not the truth: a worn share counted from
predictions is the *apparent* share `p`. With the production model's sensitivity `Se` (share of worn images it calls
worn) and specificity `Sp` (share of not-worn images it calls not worn), both from its cross-validated confusion
matrix (out-of-fold predictions of every labelled image: `model.json`), the expected apparent share of a brand
whose true share is `π` is `p = Se·π + (1 − Sp)·(1 − π)`, so the Rogan–Gladen estimate is

    π = (p + Sp − 1) / (Se + Sp − 1)        clipped to [0, 1]

The interval (95 %) is a parametric bootstrap over the three things measured with error: `Se ~ Beta(tp + ½, fn + ½)`,
`Sp ~ Beta(tn + ½, fp + ½)` (the labelled images behind the confusion matrix) and the brand's apparent share
`p ~ Beta(worn + ½, not_worn + ½)` (a brand with 5 predicted images says less than one with 5,000); Jeffreys'
½ keeps a perfect confusion matrix (Se = 1 on 100 images) from claiming no error at all. Each of DRAWS draws gives a
Rogan–Gladen estimate; the interval is their 2.5 and 97.5 percentiles (draws where Se + Sp − 1 ≤ 0, a model no
better than chance, are dropped). The random numbers are seeded and drawn the same way for every brand, so a brand's
interval does not change with the other brands listed, and the report and the dashboard print the same numbers.
Without a usable production model (none promoted, or a confusion matrix missing a class) the share is not
corrected (`worn_share_corrected` False) and the interval is the Jeffreys interval of `p` alone.
The correction assumes the model errs on each brand's images as it did on the labelled ones; images predicted by an
older model version count as predicted by the production one (`model_versions` lists them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fic_assets.defs.analytics.colours import OTHER

DRAWS = 2000
SEED = 15
LEVEL = 0.95
TOP_COLOURS = 5
EXAMPLES = 8
MISSING = "—"

OVERVIEW_COLUMNS = (
    "slug", "name", "listed", "pieces", "images", "predicted", "errors", "worn",
    "worn_share_raw", "worn_share", "worn_share_low", "worn_share_high", "worn_share_corrected",
    "price_min", "price_p25", "price_median", "price_p75", "price_max", "priced_pieces", "currency",
    "top_colours", "packshot_flags", "packshot_not_worn", "packshot_agreement", "model_versions", "top_categories",
)
TOP_CATEGORIES = 3
# Pieces without a category, in a `categories` filter: categories are never empty text (the warehouse stores NULL).
NO_CATEGORY = ""


def _chosen_pieces(categories) -> tuple[str, list]:
    """(SQL source, params) of the pieces in `categories` (None: every piece; NO_CATEGORY picks those without one).
    The source text is fixed: the names go in as parameters."""
    if categories is None:
        return "pieces", []
    names = [c for c in categories if c != NO_CATEGORY]
    return "(SELECT * FROM pieces WHERE list_contains(?, category) OR (? AND category IS NULL))", [names, NO_CATEGORY in categories]


def category_counts(snapshot) -> pd.DataFrame:
    """category (None: the shop gave none), pieces, brands; most pieces first, then the category, None last."""
    return snapshot.sql(
        """SELECT category, count(*) AS pieces, count(DISTINCT brand_slug) AS brands FROM pieces
           GROUP BY category ORDER BY category IS NULL, pieces DESC, category""")


@dataclass(frozen=True)
class ModelErrors:
    """The production model's cross-validated confusion matrix (worn = positive)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp)

    @classmethod
    def from_model(cls, model: dict | None) -> ModelErrors | None:
        """From model.json; None when there is no production model or its matrix lacks a class or beats no coin."""
        matrix = (model or {}).get("confusion_matrix") or {}
        try:
            errors = cls(**{key: int(matrix[key]) for key in ("tp", "fp", "tn", "fn")})
        except (KeyError, TypeError, ValueError):
            return None
        if errors.tp + errors.fn == 0 or errors.tn + errors.fp == 0:
            return None
        if errors.sensitivity + errors.specificity - 1 <= 0:
            return None
        return errors


def corrected_worn_share(worn, predicted, errors: ModelErrors | None, draws: int = DRAWS, level: float = LEVEL,
                         seed: int = SEED) -> pd.DataFrame:
    """worn_share_raw, worn_share, worn_share_low, worn_share_high, worn_share_corrected per (worn, predicted) pair.

    See the module docstring for the method. NaN where nothing was predicted.
    """
    worn = np.asarray(worn, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    raw = np.divide(worn, predicted, out=np.full(len(worn), np.nan), where=predicted > 0)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    share, low, high = raw.copy(), np.full(len(worn), np.nan), np.full(len(worn), np.nan)
    corrected = errors is not None
    if corrected:
        rng = np.random.default_rng(seed)
        se = rng.beta(errors.tp + 0.5, errors.fn + 0.5, draws)
        sp = rng.beta(errors.tn + 0.5, errors.fp + 0.5, draws)
        youden = se + sp - 1
        valid = youden > 0
        sp, youden = sp[valid], youden[valid]
        j0 = errors.sensitivity + errors.specificity - 1
        share = np.clip((raw + errors.specificity - 1) / j0, 0.0, 1.0)
    cache: dict[tuple[float, float], tuple[float, float]] = {}
    for i, (k, n) in enumerate(zip(worn, predicted)):
        if not n > 0:
            continue
        if (k, n) not in cache:
            # The same seed for every brand: its interval depends on its own counts only.
            p = np.random.default_rng([seed, 1]).beta(k + 0.5, n - k + 0.5, draws)
            if corrected:
                p = np.clip((p[valid] + sp - 1) / youden, 0.0, 1.0)
            cache[(k, n)] = tuple(float(q) for q in np.quantile(p, [lo_q, hi_q]))
        low[i], high[i] = cache[(k, n)]
    # The point estimate always lies in its interval: a clipped estimate, or a raw share of 0 or 1 (Jeffreys' interval
    # then starts above 0 / ends below 1; the usual convention extends it to the bound), sits on its edge.
    low, high = np.fmin(low, share), np.fmax(high, share)
    return pd.DataFrame({
        "worn_share_raw": raw, "worn_share": share, "worn_share_low": low, "worn_share_high": high,
        "worn_share_corrected": np.full(len(worn), corrected, dtype=bool),
    })


def colour_counts(snapshot, slugs=None, categories=None) -> pd.DataFrame:
    """brand_slug, colour_family, pieces, shop_words (the shop's own words behind the family, most used first).

    Pieces without a colour are left out (and with `categories`, pieces in none of them); sorted by brand, pieces
    (most first, "other" last among equals), family.
    """
    source, params = _chosen_pieces(categories)
    return snapshot.sql(
        f"""WITH words AS (
               SELECT brand_slug, colour_family, colour, count(*) AS n FROM {source}
               WHERE colour_family IS NOT NULL AND (CAST(? AS TEXT[]) IS NULL OR list_contains(?, brand_slug))
               GROUP BY ALL)
           SELECT brand_slug, colour_family, CAST(sum(n) AS BIGINT) AS pieces,
                  string_agg(colour, ', ' ORDER BY n DESC, colour) AS shop_words
           FROM words GROUP BY brand_slug, colour_family
           ORDER BY brand_slug, pieces DESC, (colour_family = ?), colour_family""",
        [*params, None if slugs is None else list(slugs), [] if slugs is None else list(slugs), OTHER],
    )


def _top_colours_text(colours: pd.DataFrame) -> dict[str, str]:
    text: dict[str, list[str]] = {}
    for slug, family, pieces in colours[["brand_slug", "colour_family", "pieces"]].itertuples(index=False):
        listed = text.setdefault(slug, [])
        if len(listed) < TOP_COLOURS:
            listed.append(f"{family} {int(pieces)}")
    return {slug: ", ".join(items) for slug, items in text.items()}


# {pieces} and {images}: the tables, or with a category filter the chosen pieces and their images (_chosen_pieces).
_BRAND_COUNTS = """
    WITH chosen_pieces AS (SELECT * FROM {pieces}),
    chosen_images AS (SELECT * FROM {images}),
    piece_stats AS (
        SELECT brand_slug, count(*) AS pieces, count(price) AS priced_pieces, min(price) AS price_min,
               quantile_cont(price, 0.25) AS price_p25, quantile_cont(price, 0.5) AS price_median,
               quantile_cont(price, 0.75) AS price_p75, max(price) AS price_max
        FROM chosen_pieces GROUP BY brand_slug),
    currencies AS (
        SELECT brand_slug, arg_max(currency, n ORDER BY n, currency DESC) AS currency FROM (
            SELECT brand_slug, currency, count(*) AS n FROM chosen_pieces WHERE currency IS NOT NULL GROUP BY ALL)
        GROUP BY brand_slug),
    category_stats AS (
        SELECT brand_slug, string_agg(category || ' ' || n, ', ' ORDER BY n DESC, category)
                               FILTER (WHERE rank <= {top_categories}) AS top_categories FROM (
            SELECT brand_slug, category, count(*) AS n,
                   row_number() OVER (PARTITION BY brand_slug ORDER BY count(*) DESC, category) AS rank
            FROM chosen_pieces WHERE category IS NOT NULL GROUP BY brand_slug, category)
        GROUP BY brand_slug),
    image_stats AS (
        SELECT brand_slug, count(*) AS images,
               count(*) FILTER (WHERE label IN ('worn', 'not_worn')) AS predicted,
               count(*) FILTER (WHERE label = 'worn') AS worn,
               count(*) FILTER (WHERE label = 'error') AS errors,
               count(*) FILTER (WHERE is_packshot AND label IN ('worn', 'not_worn')) AS packshot_flags,
               count(*) FILTER (WHERE is_packshot AND label = 'not_worn') AS packshot_not_worn,
               string_agg(DISTINCT model_version, ', ' ORDER BY model_version) AS model_versions
        FROM chosen_images GROUP BY brand_slug)
    SELECT b.slug, b.name, b.listed,
           coalesce(p.pieces, 0) AS pieces, coalesce(i.images, 0) AS images, coalesce(i.predicted, 0) AS predicted,
           coalesce(i.errors, 0) AS errors, coalesce(i.worn, 0) AS worn,
           p.price_min, p.price_p25, p.price_median, p.price_p75, p.price_max,
           coalesce(p.priced_pieces, 0) AS priced_pieces, c.currency,
           coalesce(i.packshot_flags, 0) AS packshot_flags, coalesce(i.packshot_not_worn, 0) AS packshot_not_worn,
           coalesce(i.model_versions, '') AS model_versions, coalesce(k.top_categories, '') AS top_categories
    FROM brands b
    LEFT JOIN piece_stats p ON p.brand_slug = b.slug
    LEFT JOIN category_stats k ON k.brand_slug = b.slug
    LEFT JOIN currencies c ON c.brand_slug = b.slug
    LEFT JOIN image_stats i ON i.brand_slug = b.slug"""


def brand_overview(snapshot, categories=None) -> pd.DataFrame:
    """One row per brand of the snapshot (OVERVIEW_COLUMNS), most pieces first, then name (case-insensitive), slug.

    categories (category names; NO_CATEGORY for pieces without one; None: no filter): every number over only the
    pieces in those categories and their images, the worn share and its interval recomputed from those counts;
    brands without such a piece are left out.
    A brand without pieces, images or predictions keeps its row with zero counts; numbers that do not exist (a
    share of nothing, the prices of a brand without prices) are NaN; currency is None when no piece has one.
    worn_share is corrected for the production model's error (see the module docstring), worn_share_raw is the
    share of predicted images the model calls worn; packshot_agreement is the share of the shop's packshots
    (with a prediction) the model calls not worn. top_colours: the TOP_COLOURS most common colour families.
    """
    source, params = _chosen_pieces(categories)
    images = "images" if categories is None else "images WHERE item_id IN (SELECT item_id FROM chosen_pieces)"
    frame = snapshot.sql(_BRAND_COUNTS.format(pieces=source, images=images, top_categories=int(TOP_CATEGORIES)), params)
    if categories is not None:
        frame = frame[frame["pieces"] > 0].reset_index(drop=True)
    for column in ("pieces", "images", "predicted", "errors", "worn", "priced_pieces", "packshot_flags", "packshot_not_worn"):
        frame[column] = frame[column].astype("int64")
    for column in ("price_min", "price_p25", "price_median", "price_p75", "price_max"):
        frame[column] = frame[column].astype("float64")
    frame["listed"] = frame["listed"].astype(bool)
    frame["currency"] = pd.Series([None if pd.isna(c) else c for c in frame["currency"]], dtype="object", index=frame.index)
    shares = corrected_worn_share(frame["worn"], frame["predicted"], ModelErrors.from_model(snapshot.model))
    for column in shares.columns:
        frame[column] = shares[column].to_numpy()
    frame["packshot_agreement"] = [k / n if n else math.nan for k, n in zip(frame["packshot_not_worn"], frame["packshot_flags"])]
    top = _top_colours_text(colour_counts(snapshot, categories=categories))
    frame["top_categories"] = frame["top_categories"].astype("object")
    frame["top_colours"] = pd.Series([top.get(slug, "") for slug in frame["slug"]], dtype="object", index=frame.index)
    frame["_name_key"] = frame["name"].astype(str).str.casefold()
    frame = frame.sort_values(["pieces", "_name_key", "slug"], ascending=[False, True, True], ignore_index=True)
    return frame[list(OVERVIEW_COLUMNS)]


def overview_totals(snapshot, overview: pd.DataFrame, categories=None) -> dict:
    """The totals row over the overview's brands (the same keys as a row): counts summed, the worn share pooled
    over their predicted images (with its interval), prices over their pieces, packshot agreement pooled.
    categories: the filter the overview was computed with (brand_overview(snapshot, categories))."""
    slugs = list(overview["slug"])
    sums = {column: int(overview[column].sum()) for column in
            ("pieces", "images", "predicted", "errors", "worn", "priced_pieces", "packshot_flags", "packshot_not_worn")}
    share = corrected_worn_share([sums["worn"]], [sums["predicted"]], ModelErrors.from_model(snapshot.model)).iloc[0]
    source, params = _chosen_pieces(categories)
    prices = snapshot.sql(
        f"""SELECT min(price), quantile_cont(price, 0.25), quantile_cont(price, 0.5), quantile_cont(price, 0.75), max(price)
           FROM {source} WHERE list_contains(?, brand_slug)""", [*params, slugs]).iloc[0].tolist()
    currencies = {c for c in overview["currency"] if c is not None and not pd.isna(c)}
    versions = sorted({v for text in overview["model_versions"] for v in str(text).split(", ") if v})
    return {
        "slug": "", "name": f"All {len(overview)} brand{'s' if len(overview) != 1 else ''}", "listed": True, **sums,
        **{column: share[column] for column in share.index},
        **dict(zip(("price_min", "price_p25", "price_median", "price_p75", "price_max"),
                   [math.nan if v is None or pd.isna(v) else float(v) for v in prices])),
        "currency": currencies.pop() if len(currencies) == 1 else None,
        "top_colours": _top_colours_text(colour_counts(snapshot, slugs, categories).assign(brand_slug="all")
                                         .groupby(["brand_slug", "colour_family"], as_index=False)["pieces"].sum()
                                         .sort_values(["pieces", "colour_family"], ascending=[False, True])).get("all", ""),
        "packshot_agreement": sums["packshot_not_worn"] / sums["packshot_flags"] if sums["packshot_flags"] else math.nan,
        "model_versions": ", ".join(versions),
        "top_categories": "",
    }


def brand_examples(snapshot, slug: str, n: int = EXAMPLES) -> dict[str, pd.DataFrame]:
    """{"worn", "not_worn", "least_certain"}: up to n images each of the brand (image_url, thumbnail_url, item_id,
    label, score, is_packshot, label_studio_task_url, human_label). worn / not_worn: the model's surest first;
    least_certain: score closest to 0.5 first. An image without a usable thumbnail_url (NULL) is still listed:
    the reader shows its image_url or says it has none."""
    columns = "image_url, thumbnail_url, item_id, label, score, is_packshot, label_studio_task_url, human_label"
    query = f"SELECT {columns} FROM images WHERE brand_slug = ? AND label = ? ORDER BY abs(score - 0.5) DESC, image_url LIMIT ?"
    return {
        "worn": snapshot.sql(query, [slug, "worn", n]),
        "not_worn": snapshot.sql(query, [slug, "not_worn", n]),
        "least_certain": snapshot.sql(
            f"""SELECT {columns} FROM images WHERE brand_slug = ? AND label IN ('worn', 'not_worn')
                ORDER BY abs(score - 0.5), image_url LIMIT ?""", [slug, n]),
    }


def price_history(snapshot, slug: str) -> pd.DataFrame:
    """day, pieces (with a price seen that day), price_median, price_p25, price_p75, currency of one brand's price
    observations over time (price_history: a row when a piece is new or its price moved)."""
    return snapshot.sql(
        """SELECT CAST(seen_at AS DATE) AS day, count(*) AS pieces, quantile_cont(price, 0.5) AS price_median,
                  quantile_cont(price, 0.25) AS price_p25, quantile_cont(price, 0.75) AS price_p75,
                  mode(currency) AS currency
           FROM price_history WHERE brand_slug = ? AND price IS NOT NULL GROUP BY ALL ORDER BY day""", [slug])


def model_caveat(model: dict | None) -> str:
    """How good the model behind the numbers is, in one or two sentences people can quote."""
    if not model or not model.get("version"):
        return ("No production model is recorded, so how good the predictions are is unknown: the worn shares are the "
                "model's raw counts, not corrected for its error, and their intervals cover the number of images only "
                "(train and promote a model: `dg launch --job retrain_job`).")
    cv = model.get("cv") or {}
    f1, spread, n = cv.get("f1"), cv.get("f1_std"), cv.get("n")
    labels = model.get("labels_used") or {}
    parts = [f"Model {model['version']}"]
    if f1 is not None:
        spread_text = f" ± {spread:.3f}" if spread is not None else ""
        folds = f" ({cv['folds']} folds × {cv['repeats']} repeats)" if cv.get("folds") and cv.get("repeats") else ""
        parts.append(f"cross-validated F1 {f1:.3f}{spread_text}{folds}")
    if n:
        by_label = ", ".join(f"{count} {label.replace('_', ' ')}" for label, count in labels.items())
        parts.append(f"measured on {n} labelled images" + (f" ({by_label})" if by_label else ""))
    text = ", ".join(parts) + "."
    errors = ModelErrors.from_model(model)
    if errors is not None:
        text += (f" Sensitivity {errors.sensitivity:.3f}, specificity {errors.specificity:.3f}: worn shares are "
                 "corrected for these error rates (Rogan–Gladen), and each interval (95 %) covers both the error "
                 "rates' uncertainty and the brand's number of images.")
    else:
        text += " Its confusion matrix is not usable, so worn shares are the model's raw counts (not corrected)."
    if n and n < 100:
        text += f" {n} labelled images are few: treat differences of a few percent as noise."
    return text


def format_share(value) -> str:
    return MISSING if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.1f} %"


def format_interval(low, high) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        return MISSING
    return f"{low * 100:.0f}–{high * 100:.0f} %"


def format_price(value, currency: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:,.2f} {currency}" if currency else f"{value:,.2f}"
