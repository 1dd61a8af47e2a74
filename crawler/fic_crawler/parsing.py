"""Parse Zalando-shaped pages into plain dicts (the contract is docs/shop-markup.md).

Pure functions over the page text and parsel/lxml: no Scrapy engine, so `fic parse-page` and the tests use the
same code as the spider. Nothing here reads class names: the real site hashes them on every deploy.

A real product page is ~700 KB (hydration JSON, inline styles, tracking scripts) around a few KB of product;
building its DOM costs ~5 ms, finding its JSON-LD scripts by a targeted scan of the text and `json.loads`-ing
them well under 1 ms. So the JSON-LD is read first without a DOM, and the DOM is built only when the JSON-LD is
missing, broken or incomplete (the HTML fallback). Which way answered is the item's `parsed_by`.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urljoin, urlsplit, urlunsplit

from lxml import etree
from parsel import Selector
from price_parser import Price

logger = logging.getLogger(__name__)

PRODUCT_KEYS = ("item_id", "sku", "name", "brand", "price", "currency", "colour", "url", "images", "parsed_by",
                "category", "category_path")
# parsed_by: the JSON-LD alone (no DOM built), the JSON-LD completed from the markup (a DOM was built), the markup.
PARSED_BY = ("json-ld", "json-ld+html", "html")
SKU_IN_URL = re.compile(r"-([a-z0-9]{9}-[a-z0-9]{3})\.html", re.IGNORECASE)
PRODUCT_TYPES = frozenset({"product", "individualproduct", "productmodel", "someproducts"})
COLOUR_LABELS = ("farbe", "colour", "color", "couleur", "colore", "kleur", "kolor")
# Elements whose text is never the product's price or colour: other products' cards and non-content.
SKIPPED_TAGS = frozenset({"article", "script", "style", "noscript", "template", "svg"})
STRUCK_TAGS = frozenset({"s", "del", "strike"})
# How far up from the <h1> the header container may be: the brand link and prices sit in the h1's
# parent or, behind a wrapper or two, its grandparent. Higher would reach other products' prices.
HEADER_LEVELS = 3

CURRENCY_SYMBOLS = {
    "€": "EUR", "£": "GBP", "$": "USD", "us$": "USD", "fr.": "CHF", "chf": "CHF",
    "zł": "PLN", "kč": "CZK", "ft": "HUF", "lei": "RON",
}
KRONE_BY_LANGUAGE = {"sv": "SEK", "da": "DKK", "nb": "NOK", "no": "NOK", "nn": "NOK"}
PRICE_TEXT = re.compile(r"\d.{0,20}?(?:€|£|\$|chf|fr\.|zł|kč|kr|ft|lei|[a-z]{3})|(?:€|£|\$|chf|fr\.|[a-z]{3})\s?\d", re.IGNORECASE)
# Sane bounds for a price in any currency the shops use (a 10 000 EUR coat is ~4 M HUF): above this, `1e308`,
# `inf` and `nan` are markup bugs or hostile values, never what a piece costs.
MAX_PRICE = 10_000_000.0
EXPONENT = re.compile(r"\d[eE][+-]?\d")
# Image URLs the feed may carry: fetched later by the platform, so only the web's own schemes.
IMAGE_SCHEMES = frozenset({"http", "https"})
CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
FRAGMENT_PARSER = etree.HTMLParser(recover=True, encoding="utf-8")
# No DOM is built of a page larger than this (a real one is < 1 MB; lxml needs ~10x the text in memory): the
# JSON-LD scan still reads it, the HTML fallback does not (`page_too_large`).
MAX_DOM_CHARS = 8_000_000
# How much markup after the <h1> the cross-check of JSON-LD against the visible header reads (price, colour).
HEADER_CHARS = 1500


class NoProductError(ValueError):
    """The page holds no product (a listing, a 404 page, an empty or JavaScript-only page).

    `kind` is the drop reason the spider counts (`fic/dropped/<kind>`); `reason` says why in words.
    """

    def __init__(self, reason: str, kind: str = "no_product") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


# --- small text and URL helpers -------------------------------------------------------------------------


def clean_text(value: str | None) -> str | None:
    if value is None:
        return None
    if "&" in value:
        # JSON-LD is not entity-decoded by the HTML parser; shops still write `Levi&#39;s` into it.
        value = html_lib.unescape(value)
    value = " ".join(value.split())
    return value or None


def fold(value: str) -> str:
    """Comparison form: case, whitespace and typographic apostrophes do not matter."""
    return " ".join(value.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").casefold().split())


# An absolute http(s) URL that urljoin returns unchanged: no params, empty query or fragment marker, whitespace or
# control character for it to normalise away. Most URLs in JSON-LD are such; joining each costs ~10 us.
PLAIN_ABSOLUTE_URL = re.compile(r"https?://[^\x00-\x20\x7f/?#;]+(?:/[^\x00-\x20\x7f?#;]*)?(?:\?[^\x00-\x20\x7f#]+)?")


def absolute_url(base: str, href: str) -> str:
    """urljoin(base, href), without parsing both when `href` is a plain absolute URL already."""
    return href if PLAIN_ABSOLUTE_URL.fullmatch(href) else urljoin(base, href)


def url_without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def sku_from_url(url: str) -> str | None:
    match = SKU_IN_URL.search(urlsplit(url).path)
    return match.group(1).upper() if match else None


def item_id_for(sku: str | None, url: str) -> str:
    """The SKU when known; otherwise a stable hash of the URL without query/fragment (tracking params vary)."""
    if sku:
        return sku.upper()
    return hashlib.sha1(url_without_query(url).encode("utf-8")).hexdigest()[:16]


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """parse_qsl(query, keep_blank_values=True); a query with nothing to unquote (`imwidth=1800`) split directly."""
    if not query:
        return []
    if "%" in query or "+" in query:
        return parse_qsl(query, keep_blank_values=True)
    return [(key, value) for key, _, value in (pair.partition("=") for pair in query.split("&") if pair)]


def image_key(url: str, parts: SplitResult | None = None, query: list[tuple[str, str]] | None = None) -> str:
    """The same image at another `imwidth` (gallery thumbnails) is the same image."""
    parts = parts or urlsplit(url)
    query = _query_pairs(parts.query) if query is None else query
    rest = urlencode([(k, v) for k, v in query if k != "imwidth"]) if query else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))


def image_width(url: str, query: list[tuple[str, str]] | None = None) -> int:
    for key, value in _query_pairs(urlsplit(url).query) if query is None else query:
        if key == "imwidth" and value.isdigit():
            return int(value)
    return 0


def is_packshot(url: str, query: list[tuple[str, str]] | None = None) -> bool:
    return ("filter", "packshot") in (_query_pairs(urlsplit(url).query) if query is None else query)


def image_records(urls: Iterable[str]) -> list[dict]:
    """Dedupe by URL ignoring `imwidth` keeping first-seen order, each at its widest variant."""
    best: dict[str, tuple[str, int, bool]] = {}
    for url in urls:
        parts = urlsplit(url)  # once per URL: a product page carries dozens
        query = _query_pairs(parts.query)
        key, width = image_key(url, parts, query), image_width(url, query)
        if key not in best or width > best[key][1]:
            best[key] = (url, width, is_packshot(url, query))
    return [{"url": url, "position": position, "is_packshot": packshot}
            for position, (url, _, packshot) in enumerate(best.values())]


def page_selector(html: str) -> Selector:
    return Selector(text=html or "<html></html>", type="html")


def as_selector(page: str | Selector) -> Selector:
    return page if isinstance(page, Selector) else page_selector(page)


# --- targeted scans of the page text (no DOM) -------------------------------------------------------------
# The HTML tokenizer's rules that matter here: a <script>'s text runs to the next `</script`, whatever it holds
# (hydration JSON quotes markup such as "<h1>" or '<script type="application/ld+json">'), and a comment's to
# `-->`. Tags are taken in lower case, as every shop writes them.

TYPE_ATTRIBUTE = re.compile(r"""\btype\s*=\s*["']?([^"'\s>]*)""", re.IGNORECASE)


class _Needles:
    """The scans' strings, as str or as bytes: a fetched page is scanned as the bytes it came in (a 700 KB page
    with one "€" is 1.4 MB as a Python str, and decoding it costs more than the whole scan)."""

    def __init__(self, kind: type) -> None:
        def cast(text: str) -> Any:
            return text if kind is str else text.encode("ascii")

        self.ld_json, self.application_ld_json = cast("ld+json"), cast("application/ld+json")
        self.lt, self.gt, self.script, self.script_end = cast("<"), cast(">"), cast("<script"), cast("</script")
        self.comment, self.comment_end, self.h1_end = cast("<!--"), cast("-->"), cast("</h1")
        self.tag_name_end = cast(" \t\r\n\f/")
        self.type_attribute = TYPE_ATTRIBUTE if kind is str else re.compile(TYPE_ATTRIBUTE.pattern.encode(), re.IGNORECASE)
        # An <h1> tag's start. A regex, not find("<h1"): a 3-character needle ending in "1" stops at every digit of
        # the markup (bytes.find: 155 us to the <h1> 241 KB into a real-size page; this regex: 68 us).
        self.h1_tag = re.compile(cast(r"<h1[> \t\r\n\f]"))


NEEDLES = {str: _Needles(str), bytes: _Needles(bytes)}
ATTRIBUTE = re.compile(r"""([^\s"'<>/=]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
LINK_OR_META = re.compile(r"<(?:link|meta)\b[^>]*>", re.IGNORECASE)
# A tag, its attribute values quoted or not (a quoted value may hold ">"); what lies between two tags is text.
TAG = re.compile(r"""<[^<>"']*(?:(?:"[^"]*"|'[^']*')[^<>"']*)*>""")
TAG_SPLIT = re.compile(f"({TAG.pattern})")
HTML_LANG = re.compile(r"""<html\b[^>]*?\slang\s*=\s*["']?([A-Za-z0-9-]+)""", re.IGNORECASE)


def _in_markup(html: str | bytes, pos: int) -> bool:
    """A tag at `pos` is one the browser sees: not quoted in a script's text, not commented out.

    Looks back only to the nearest `</script` (scripts do not nest: a `<script` after it means `pos` is inside that
    script's text), so the cost is the distance to the previous script, not to the top of a 700 KB page. A comment
    opened before that `</script` (a commented-out run of scripts) is not seen: no shop writes one around JSON-LD.
    """
    n = NEEDLES[type(html)]
    since = max(html.rfind(n.script_end, 0, pos), 0)
    if html.rfind(n.script, since, pos) != -1:
        return False
    comment = html.rfind(n.comment, since, pos)
    return comment == -1 or html.find(n.comment_end, comment + 4, pos) != -1


def json_ld_scripts(html: str | bytes, encoding: str = "utf-8") -> list[str]:
    """The text of every `<script type="application/ld+json">` of the page, in page order, without parsing the page.

    `html` as text, or as the bytes it came in (any ASCII-compatible `encoding`; only the scripts are decoded).
    Finds each "application/ld+json" (else any "ld+json"), then checks that it is the type of a <script> tag the
    browser sees. A script cut off by the end of the page runs to the end, as in the DOM.
    """
    n = NEEDLES[type(html)]
    scripts = _json_ld_scripts(html, n, n.application_ld_json) or _json_ld_scripts(html, n, n.ld_json)
    return [script.decode(encoding, errors="replace") if isinstance(script, bytes) else script for script in scripts]


def _json_ld_scripts(html: Any, n: _Needles, needle: Any) -> list:
    scripts = []
    pos = 0
    while (hit := html.find(needle, pos)) != -1:
        pos = hit + len(needle)
        start = html.rfind(n.lt, 0, hit)
        if start == -1 or html[start : start + 7].lower() != n.script or html[start + 7 : start + 8] not in n.tag_name_end:
            continue
        open_end = html.find(n.gt, hit)
        if open_end == -1:
            break
        declared = n.type_attribute.search(html, start + 7, open_end)
        if (n.lt in html[start + 1 : hit] or not declared or n.ld_json not in declared.group(1).lower()
                or not _in_markup(html, start)):
            continue
        end = html.find(n.script_end, open_end)
        end = len(html) if end == -1 else end
        scripts.append(html[open_end + 1 : end])
        pos = end
    return scripts


def tag_attributes(tag: str) -> dict[str, str]:
    """`<link rel="canonical" href="...">` -> {"rel": "canonical", "href": "..."} (names lower case, values unescaped)."""
    found = {}
    for match in ATTRIBUTE.finditer(tag, tag.find(" ") + 1 if " " in tag else len(tag)):
        value = next(group for group in match.groups()[1:] if group is not None)
        found.setdefault(match.group(1).lower(), html_lib.unescape(value))
    return found


def canonical_url(html: str) -> str | None:
    """The page's own URL as it declares it in its head (`<link rel=canonical>`, else og:url); absolute URLs only."""
    head_end = html.find("</head")
    for match in LINK_OR_META.finditer(html, 0, head_end if head_end != -1 else len(html)):
        attributes = tag_attributes(match.group())
        if "canonical" in attributes.get("rel", "").lower().split():
            href = attributes.get("href", "")
        elif attributes.get("property") == "og:url":
            href = attributes.get("content", "")
        else:
            continue
        if urlsplit(href.strip()).scheme in ("http", "https"):
            return href.strip()
    return None


def html_language(html: str) -> str:
    match = HTML_LANG.search(html, 0, 4096)
    return match.group(1).lower() if match else ""


def header_fragment(html: str | bytes, encoding: str = "utf-8") -> str | None:
    """The page's product <h1> and the markup right after it (price, colour), cut at a tag: the visible header,
    read without a DOM of the page. None without an <h1>."""
    n = NEEDLES[type(html)]
    pos = 0
    while (found := n.h1_tag.search(html, pos)) is not None:
        start = found.start()
        pos = start + 3
        if not _in_markup(html, start):
            continue
        close = html.find(n.h1_end, start)
        close = start if close == -1 else close
        limit = close + HEADER_CHARS
        if limit >= len(html):
            fragment = html[start:]
        else:
            cut = html.rfind(n.lt, close, limit)
            fragment = html[start : cut if cut > close else limit]
        return fragment.decode(encoding, errors="replace") if isinstance(fragment, bytes) else fragment
    return None


def ascii_compatible(encoding: str) -> bool:
    """Can a page in this encoding be scanned as bytes for ASCII markup (UTF-8, Latin-1, cp1252; not UTF-16)?"""
    try:
        return "<script>".encode(encoding) == b"<script>"
    except LookupError:
        return False


class Page:
    """One page: its content as text or as the bytes it came in (what the scans read), its text decoded only when
    needed, and its DOM only once something asks for it (`selector`; `dom_built` says whether)."""

    def __init__(self, content: str | bytes, url: str, selector: Callable[[], Selector] | None = None,
                 encoding: str = "utf-8") -> None:
        if isinstance(content, bytes) and not ascii_compatible(encoding):
            content = content.decode(encoding, errors="replace")
        self.content = content
        self.encoding = encoding
        self.url = url.split("#", 1)[0]
        self._selector = selector

    @cached_property
    def html(self) -> str:
        content = self.content
        return content.decode(self.encoding, errors="replace") if isinstance(content, bytes) else content

    @property
    def too_large(self) -> bool:
        return len(self.content) > MAX_DOM_CHARS

    @cached_property
    def selector(self) -> Selector:
        return self._selector() if self._selector is not None else page_selector(self.html)

    @property
    def dom_built(self) -> bool:
        return "selector" in self.__dict__

    @cached_property
    def markup(self) -> Markup:
        """The visible page (a DOM); an empty one for a page too large for a DOM, so each markup field is None."""
        if self.too_large:
            return Markup(page_selector(""), self.url)
        return Markup(self.selector, self.url)

    @cached_property
    def header_fragment(self) -> str | None:
        return header_fragment(self.content, self.encoding)

    @cached_property
    def language(self) -> str:
        top = self.content[:4096]
        return html_language(top.decode(self.encoding, errors="replace") if isinstance(top, bytes) else top)

    @cached_property
    def header(self) -> Markup | None:
        """The visible header for the cross-check: the page's markup when built anyway, else its header fragment's."""
        if self.dom_built:
            return self.markup
        fragment = self.header_fragment
        if fragment is None:
            return None
        document = f'<html lang="{self.language}"><body>{fragment}</body></html>'.encode("utf-8")
        # One parser for every fragment (parsel makes a new one per page, a good part of a 1.5 KB parse).
        return Markup(etree.fromstring(document, FRAGMENT_PARSER), self.url)

    @cached_property
    def canonical(self) -> str | None:
        return canonical_url(self.html)


# --- structured data (JSON-LD) --------------------------------------------------------------------------


# strict=False: real pages put raw newlines into description strings. One decoder for all pages: json.loads with
# an argument builds a new one per call, a tenth of the JSON-LD path's time.
JSON_LD_DECODER = json.JSONDecoder(strict=False)


def _strip_script_wrappers(text: str) -> str:
    text = text.strip()
    for start, end in (("<!--", "-->"), ("<![CDATA[", "]]>"), ("//<![CDATA[", "//]]>")):
        if text.startswith(start) and text.endswith(end):
            text = text[len(start) : -len(end)].strip()
    return text


def json_ld_nodes(html: str | bytes, notes: list[str], encoding: str = "utf-8") -> Iterator[dict]:
    """Every JSON object in the page's ld+json scripts, lists and `@graph` flattened.

    A script with invalid JSON is skipped and noted: one broken block must not hide a good one. So is a script
    nested deeper than the JSON decoder's recursion limit (hostile or broken: no shop nests a Product 1000 deep).
    JSON whose quotes are HTML entities (`{&quot;@type&quot;: ...}`: a template escaped it twice) is read unescaped
    and noted `json_ld_html_escaped`.
    """
    for index, raw in enumerate(json_ld_scripts(html, encoding)):
        text = _strip_script_wrappers(raw)
        if not text:
            continue
        try:
            data = JSON_LD_DECODER.decode(text)
        except ValueError as error:
            data = _html_escaped_json(text)
            if data is None:
                notes.append("invalid_json_ld")
                logger.debug("skipping ld+json script #%d: invalid JSON (%s)", index, error)
                continue
            notes.append("json_ld_html_escaped")
        except RecursionError:
            notes.append("json_ld_too_deep")
            logger.debug("skipping ld+json script #%d: nested too deep to decode", index)
            continue
        yield from _walk_json_ld(data, depth=0)


def _html_escaped_json(text: str) -> Any:
    if "&quot;" not in text and "&#34;" not in text and "&#x22;" not in text.lower():
        return None
    try:
        return JSON_LD_DECODER.decode(html_lib.unescape(text))
    except (ValueError, RecursionError):
        return None


def _walk_json_ld(data: Any, depth: int) -> Iterator[dict]:
    if depth > 5:
        return
    if isinstance(data, list):
        for node in data:
            yield from _walk_json_ld(node, depth + 1)
    elif isinstance(data, dict):
        yield data
        for key in ("@graph", "mainEntity"):
            if key in data:
                yield from _walk_json_ld(data[key], depth + 1)


def is_product_node(node: dict) -> bool:
    types = node.get("@type")
    types = types if isinstance(types, list) else [types]
    return any(isinstance(t, str) and t.rsplit("/", 1)[-1].lower() in PRODUCT_TYPES for t in types)


def _node_skus(node: dict) -> set[str]:
    return {text.upper() for text in (json_text(node.get(key)) for key in ("sku", "productID", "mpn")) if text}


def _node_urls(node: dict, page_url: str) -> set[str]:
    urls = set()
    for key in ("url", "@id"):
        value = node.get(key)
        if isinstance(value, str) and value.strip():
            urls.add(url_without_query(absolute_url(page_url, value.strip())))
    return urls


def pick_product(
    nodes: Iterable[dict], url_sku: str | None, page_urls: Callable[[], Iterable[str]] = tuple,
    heading: Callable[[], Iterable[str | None]] = tuple,
) -> dict | None:
    """The page's own Product among the JSON-LD nodes; None when there is none.

    One Product is the page's unless it names another product on every count (its SKU is not the URL's, its
    URL is not the page's or canonical one, its name is not the <h1>). With several (the page's own beside
    recommendations), the one that matches the page: by SKU, else by URL / canonical link, else by the <h1>;
    when none matches (or two match equally) NoProductError(kind="ambiguous_product"): never a guess.
    `page_urls` gives the page's URL and canonical link, `heading` its <h1> texts: each called only when needed
    (the <h1> needs a DOM), most pages are decided by the SKU.
    """
    products: list[dict] = []
    seen: set[str] = set()
    skus: dict[int, tuple[dict, set[str]]] = {}  # id(node) -> (node, its SKUs): read once; the node kept, so its id is not reused

    def node_skus(node: dict) -> set[str]:
        if id(node) not in skus:
            skus[id(node)] = (node, _node_skus(node))
        return skus[id(node)][1]

    for node in nodes:
        if not is_product_node(node):
            continue
        # The same product twice (tag managers repeat blocks) is one product; not json.dumps: a node nested
        # hundreds deep would recurse again.
        key = repr((sorted(node_skus(node)), json_text(node.get("name")), sorted(_node_urls(node, ""))))
        if key not in seen:
            seen.add(key)
            products.append(node)
    if not products:
        return None
    known_urls: list[list[str]] = []
    folded: list[set[str]] = []

    def urls() -> list[str]:
        if not known_urls:
            known_urls.append([url for url in page_urls() if url])
        return known_urls[0]

    def headings() -> set[str]:
        if not folded:
            folded.append({fold(text) for text in heading() if text})
        return folded[0]

    def by_sku(node: dict) -> bool:
        return bool(url_sku) and any(sku == url_sku or sku.startswith(url_sku) for sku in node_skus(node))

    def by_url(node: dict) -> bool:
        page_url = urls()[0] if urls() else ""
        return bool({url_without_query(url) for url in urls()} & _node_urls(node, page_url))

    def by_heading(node: dict) -> bool:
        name = json_text(node.get("name"))
        return bool(name) and fold(name) in headings()

    if len(products) == 1:
        node = products[0]
        contradicts = (
            bool(url_sku and node_skus(node)) and not by_sku(node)
            and not by_url(node) and bool(json_text(node.get("name"))) and bool(headings()) and not by_heading(node)
        )
        if not contradicts:
            return node
        raise NoProductError(
            f"the only schema.org Product in JSON-LD ({json_text(node.get('name'))!r}, SKU {sorted(node_skus(node))}) "
            f"is not this page's: SKU {url_sku}, <h1> {sorted(headings())}",
            kind="product_mismatch",
        )
    for matches in (by_sku, by_url, by_heading):
        found = [node for node in products if matches(node)]
        if found and (len(found) == 1 or matches is by_sku):
            return found[0]  # two blocks with the page's own SKU describe the same product
    names = [json_text(node.get("name")) for node in products]
    raise NoProductError(
        f"{len(products)} schema.org Products in JSON-LD ({names}) and none matches the page's SKU {url_sku}, "
        f"URL / canonical link or <h1> {sorted(headings())}",
        kind="ambiguous_product",
    )


def json_text(value: Any) -> str | None:
    """A display string from a JSON-LD value that may be a string, a number, a {name: ...} dict or a list."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("name")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return clean_text(value) if isinstance(value, str) else None


def sane_price(amount: float | None, notes: list[str] | None = None) -> float | None:
    """The amount when it can be what a piece costs: finite, above zero, at most MAX_PRICE.

    Zero is a placeholder (a sold-out size), dropped quietly; NaN, infinities, `1e308` and negative amounts are
    rejected and noted (`price_rejected`).
    """
    if amount is None or amount == 0:
        return None
    if not math.isfinite(amount) or amount < 0 or amount > MAX_PRICE:
        if notes is not None:
            notes.append("price_rejected")
        return None
    return amount


def parse_amount(value: Any, notes: list[str] | None = None) -> float | None:
    """A JSON-LD price: number or string ("34.99"); None when unparseable or not a sane price (see sane_price)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            amount = float(value)
        except OverflowError:  # an int with hundreds of digits
            amount = math.inf
    elif isinstance(value, str):
        text = value.strip()
        try:
            amount = float(text)
        except ValueError:
            amount = Price.fromstring(text).amount_float
            if amount is None:
                return None
    else:
        return None
    return sane_price(amount, notes)


def _offer_prices(offers: Any, currency: str | None, notes: list[str] | None, depth: int = 0) -> Iterator[tuple[float, str | None]]:
    if depth > 4:
        return
    if isinstance(offers, list):
        for offer in offers:
            yield from _offer_prices(offer, currency, notes, depth + 1)
        return
    if not isinstance(offers, dict):
        return
    currency = json_text(offers.get("priceCurrency")) or currency
    for key in ("price", "lowPrice"):
        value = offers.get(key)
        if isinstance(value, dict):
            # A price object instead of a string: {"@type": "PriceSpecification", "price": "39.95", "priceCurrency":
            # "EUR"} or {"value": 39.95, "currency": "EUR"}.
            value = {"price": next((value[name] for name in ("price", "value", "amount") if name in value), None),
                     "priceCurrency": value.get("priceCurrency") or value.get("currency")}
            yield from _offer_prices(value, currency, notes, depth + 1)
            continue
        amount = parse_amount(value, notes)
        if amount is not None:
            yield amount, currency.upper() if currency else None
    for key in ("priceSpecification", "offers"):
        if key in offers:
            yield from _offer_prices(offers[key], currency, notes, depth + 1)


def offer_prices(offers: Any, notes: list[str] | None = None) -> list[tuple[float, str | None]]:
    """Every sane (amount, ISO currency) of a JSON-LD `offers` value, in document order."""
    return list(_offer_prices(offers, None, notes))


def choose_offer(
    prices: list[tuple[float, str | None]], currency: str | None = None, notes: list[str] | None = None
) -> tuple[float | None, str | None]:
    """The lowest offer, never comparing amounts across currencies.

    Offers in one currency: the lowest. In several: the lowest in `currency` (the page's own, see
    page_currency); when the page names none of them, no price at all (noted `ambiguous_currency`), because
    25 GBP and 30 EUR are not comparable numbers.
    """
    if not prices:
        return None, None
    known = {code for _, code in prices if code}
    if len(known) > 1:
        if notes is not None:
            notes.append("mixed_currencies")
        if not currency or currency.upper() not in known:
            if notes is not None:
                notes.append("ambiguous_currency")
            return None, None
        known = {currency.upper()}
    if known:
        (code,) = known
        prices = [pair for pair in prices if pair[1] == code]
    amount, code = min(prices, key=lambda pair: pair[0])
    return amount, code


def lowest_offer(offers: Any, currency: str | None = None, notes: list[str] | None = None) -> tuple[float | None, str | None]:
    """Lowest offer price and its currency (offers per size may differ; the listing shows the lowest)."""
    return choose_offer(offer_prices(offers, notes), currency, notes)


def page_currency(page: Page) -> str | None:
    """The currency the page shows its price in: the visible price, else a price:currency / itemprop meta."""
    visible = page.markup.details[1]
    if visible or page.too_large:
        return visible
    for value in page.markup.root.xpath(
        '//meta[@property="product:price:currency" or @property="og:price:currency" or @itemprop="priceCurrency"]/@content'
    ):
        if re.fullmatch(r"\s*[A-Za-z]{3}\s*", value):
            return value.strip().upper()
    return None


def json_ld_image_urls(value: Any, depth: int = 0) -> list[str]:
    if depth > 4:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list):
        return [url for entry in value for url in json_ld_image_urls(entry, depth + 1)]
    if isinstance(value, dict):
        return json_ld_image_urls(value.get("contentUrl") or value.get("url"), depth + 1)
    return []


def image_url_problem(url: str) -> str | None:
    """Why an (absolute) image URL must not reach the feed, or None: only http(s) URLs with a host.

    `javascript:`, `data:`, `ftp:`, `file:` and friends, and URLs with whitespace or control characters
    (which browsers strip, so they hide a scheme), would be fetched by the platform later.
    """
    if CONTROL_OR_SPACE.search(url):
        return "control_characters"
    parts = urlsplit(url)
    if parts.scheme.lower() not in IMAGE_SCHEMES:
        return f"scheme_{re.sub(r'[^a-z0-9+.-]', '', parts.scheme.lower())[:20] or 'none'}"
    if not parts.hostname:
        return "no_host"
    return None


def allowed_image_urls(urls: Iterable[str], page_url: str, notes: list[str]) -> list[str]:
    """The URLs that may reach the feed; each other one is dropped and noted `image_dropped/<why>`."""
    kept = []
    for url in urls:
        problem = image_url_problem(url)
        if problem is None:
            kept.append(url)
            continue
        notes.append(f"image_dropped/{problem}")
        logger.warning("%s: image URL dropped (%s): %.120r", page_url, problem, url)
    return kept


# --- visible markup (fallback) --------------------------------------------------------------------------


def _language(root: etree._Element) -> str:
    return (root.get("lang") or "").strip().lower()


def decimal_separator(language: str) -> str | None:
    """The locale's decimal separator; None lets price-parser guess for a locale we do not know."""
    base = language.split("-")[0]
    if base == "en" or language.endswith("-ch"):
        return "."
    if base in {"de", "fr", "it", "es", "nl", "pl", "cs", "sk", "sv", "da", "fi", "nb", "no", "nn", "pt", "hu", "ro", "hr", "sl", "lt", "lv", "et", "be"}:
        return ","
    return None


def currency_code(symbol: str | None, language: str) -> str | None:
    if not symbol:
        return None
    key = symbol.strip().lower()
    if key == "kr":
        return KRONE_BY_LANGUAGE.get(language.split("-")[0])
    if key in CURRENCY_SYMBOLS:
        return CURRENCY_SYMBOLS[key]
    return key.upper() if re.fullmatch(r"[a-z]{3}", key) else None


def parse_price_text(text: str, language: str) -> tuple[float, str | None] | None:
    """A visible price ("39,95 €" in de-DE, "£39.95" in en-GB) as (amount, ISO currency)."""
    text = text.strip()
    # A leading minus is a discount amount ("-10,00 €"), not a price; an exponent ("1e308 €") is no price at all.
    if not text or text[0] in "-\u2212" or not PRICE_TEXT.search(text) or EXPONENT.search(text):
        return None
    price = Price.fromstring(text, decimal_separator=decimal_separator(language))
    if sane_price(price.amount_float) is None or not price.currency:
        return None
    return price.amount_float, currency_code(price.currency, language)


def _brand_like_href(href: str | None, page_url: str) -> bool:
    """A brand listing link: one path segment ending in a slash (`/levis/`), on any host."""
    if not href:
        return False
    path = urlsplit(urljoin(page_url, href.strip())).path
    segments = path.split("/")
    return path.endswith("/") and len([s for s in segments if s]) == 1


def _text_without(element: etree._Element, skip: etree._Element | None) -> str:
    parts = [element.text or ""]
    for child in element:
        if child is not skip and isinstance(child.tag, str):
            parts.append(_text_without(child, skip))
        parts.append(child.tail or "")
    return "".join(parts)


def _is_struck(text_parent: etree._Element, stop: etree._Element) -> bool:
    node: etree._Element | None = text_parent
    while node is not None:
        if node.tag in STRUCK_TAGS or "line-through" in (node.get("style") or ""):
            return True
        if node is stop:
            return False
        node = node.getparent()
    return False


def _in_nav(element: etree._Element, stop: etree._Element) -> bool:
    """Inside site navigation (menus link to `/cart/`, `/women-clothing/`: brand-shaped, not brands)."""
    node = element.getparent()
    while node is not None and node is not stop:
        if node.tag in ("nav", "header", "footer"):
            return True
        node = node.getparent()
    return False


def _block_of(element: etree._Element) -> etree._Element:
    node = element
    while node.tag not in ("p", "div", "li", "section", "dd") and node.getparent() is not None:
        node = node.getparent()
    return node


class Markup:
    """What the visible page says about its product, computed lazily: JSON-LD usually makes most unneeded."""

    def __init__(self, sel: Selector | etree._Element, url: str) -> None:
        self.root: etree._Element = sel if isinstance(sel, etree._Element) else sel.root
        self.url = url
        self.language = _language(self.root) if isinstance(self.root.tag, str) else ""

    @cached_property
    def h1(self) -> etree._Element | None:
        for h1 in self.root.xpath("//h1[not(ancestor::article)]"):
            if "".join(h1.itertext()).strip():
                return h1
        return None

    @cached_property
    def brand_link(self) -> etree._Element | None:
        """The brand's listing link: inside the h1, else the nearest one before it in the header container."""
        if self.h1 is None:
            return None
        for link in self.h1.iter("a"):
            if _brand_like_href(link.get("href"), self.url):
                return link
        container = self.h1
        for _ in range(HEADER_LEVELS):
            container = container.getparent()
            if container is None:
                return None
            nearest = None
            for element in container.iter():
                if element is self.h1:
                    break
                if element.tag == "a" and _brand_like_href(element.get("href"), self.url) and not _in_nav(element, container):
                    nearest = element
            if nearest is not None:
                return nearest
        return None

    @cached_property
    def brand(self) -> str | None:
        link = self.brand_link
        if link is None:
            return None
        return clean_text("".join(link.itertext())) or clean_text(link.get("title") or link.get("aria-label"))

    @cached_property
    def name(self) -> str | None:
        if self.h1 is None:
            return None
        link = self.brand_link
        inside = link is not None and any(element is link for element in self.h1.iter("a"))
        name = clean_text(_text_without(self.h1, link if inside else None))
        if name:
            name = name.strip(" -\u2013|:") or None
        return name or clean_text("".join(self.h1.itertext()))

    def _header_texts(self) -> Iterator[tuple[str, etree._Element, bool]]:
        """(text, parent element, struck?) after the h1 in its header container, nearest first."""
        node = self.h1
        for _ in range(HEADER_LEVELS):
            if node is None:
                return
            for sibling in node.itersiblings():
                yield from self._texts_in(sibling)
            node = node.getparent()

    def _texts_in(self, top: etree._Element) -> Iterator[tuple[str, etree._Element, bool]]:
        if not isinstance(top.tag, str) or top.tag in SKIPPED_TAGS:
            return
        for text in top.xpath(".//text()[normalize-space()][not(ancestor::article)][not(ancestor::script)][not(ancestor::style)]"):
            parent = text.getparent()
            if text.is_tail:
                parent = parent.getparent()
                if parent is None:
                    continue
            yield str(text), parent, _is_struck(parent, top)

    @cached_property
    def details(self) -> tuple[float | None, str | None, str | None]:
        """(price, currency, colour) from one pass over the header container."""
        price: tuple[float, str | None] | None = None
        price_block: etree._Element | None = None  # None once the price is final
        colour: str | None = None
        colour_next = False
        for text, parent, struck in self._header_texts():
            stripped = text.strip()
            if colour_next:
                colour, colour_next = clean_text(stripped), False
                continue
            if colour is None:
                label, colon, rest = stripped.partition(":")
                if colon and label.strip().casefold() in COLOUR_LABELS:
                    colour = clean_text(rest)
                    colour_next = colour is None
                    continue
            if price is not None and price_block is not None and _block_of(parent) is not price_block:
                price_block = None
            if price is not None and price_block is None:
                if colour is not None:
                    break
                continue
            parsed = None if struck else parse_price_text(stripped, self.language)
            if parsed is None:
                continue
            if price is None:
                price, price_block = parsed, _block_of(parent)
            elif parsed[0] < price[0]:
                # Two unmarked prices in one block: the old one, then the sale one (the lower).
                price = parsed
        if colour is None:
            colour = self._colour_anywhere()
        amount, currency = price if price else (None, None)
        return amount, currency, colour

    def _colour_anywhere(self) -> str | None:
        """The colour label outside the header container (some layouts put it under the gallery)."""
        for text in self.root.xpath("//text()[contains(., ':')][not(ancestor::article)][not(ancestor::script)]"):
            label, _, rest = str(text).strip().partition(":")
            if label.strip().casefold() not in COLOUR_LABELS:
                continue
            if clean_text(rest):
                return clean_text(rest)
            # The value is the next text; for a label that is a tail text, `following::` starts with itself.
            following = text.getparent().xpath("following::text()[normalize-space()][position() <= 2]")
            values = [str(value) for value in following if str(value).strip() != str(text).strip()]
            return clean_text(values[0]) if values else None
        return None

    def gallery_urls(self, name: str | None) -> list[str]:
        """The product's own images: `img` outside recommendation cards whose alt names the product."""
        if not name:
            return []
        needle = fold(name)
        urls = []
        for img in self.root.xpath("//img[@alt][not(ancestor::article)]"):
            if needle not in fold(img.get("alt", "")):
                continue
            src = (img.get("src") or img.get("data-src") or "").strip()
            if not src and img.get("srcset"):
                src = img.get("srcset").split(",")[0].split()[0]
            if src and not src.startswith("data:"):
                urls.append(urljoin(self.url, src))
        return urls

    @property
    def looks_like_product(self) -> bool:
        price, _, colour = self.details
        return self.h1 is not None and (price is not None or colour is not None or bool(self.gallery_urls(self.name)))


# --- the product ----------------------------------------------------------------------------------------


def parse_product(html: str | bytes, url: str, notes: list[str] | None = None, selector: Callable[[], Selector] | None = None,
                  encoding: str = "utf-8") -> dict:
    """The product on a saved or fetched page, as a dict with exactly PRODUCT_KEYS.

    `html`: the page's text, or the bytes it came in with their `encoding` (the spider's response.body: scanned
    without decoding the page). JSON-LD first, read without a DOM; a DOM of the page (`selector`, e.g. the spider's
    `lambda: response.selector`, else built from the text) only for what the JSON-LD does not say. `notes` collects
    the fallbacks and oddities met (the spider counts them). Raises NoProductError when the page holds no product.
    """
    notes = notes if notes is not None else []
    if not html or not html.strip():
        raise NoProductError("empty page")
    page = Page(html, url, selector, encoding)
    product = _product(page, notes)
    for note in notes:
        logger.debug("%s: %s", page.url, note)
    return product


def _product(page: Page, notes: list[str]) -> dict:
    url = page.url
    url_sku = sku_from_url(url)

    def heading() -> list[str | None]:
        markup = page.markup
        return [markup.name, clean_text("".join(markup.h1.itertext()))] if markup.h1 is not None else []

    # A list (pick_product reads every node anyway): the BreadcrumbList among them gives the category.
    nodes = list(json_ld_nodes(page.content, notes, page.encoding))
    node = pick_product(nodes, url_sku, page_urls=lambda: [url, page.canonical or ""], heading=heading)
    if node is None:
        if page.too_large:
            raise NoProductError(
                f"no schema.org Product in JSON-LD, and the page ({len(page.content):,} characters) is too large for a DOM "
                f"(at most {MAX_DOM_CHARS:,})" + _unread_json_ld(notes), kind="page_too_large")
        markup = page.markup  # the whole page's DOM
        if markup.h1 is None:
            raise NoProductError("no schema.org Product in JSON-LD and no <h1> product heading" + _unread_json_ld(notes))
        if not markup.looks_like_product:
            raise NoProductError(
                f"no schema.org Product in JSON-LD and no price, colour or gallery next to the <h1> {markup.name!r}"
                + _unread_json_ld(notes)
            )
        notes.append("markup_only")
        node = {}
    elif page.too_large:
        notes.append("page_too_large_for_markup")

    name = json_text(node.get("name")) or _noted(lambda: page.markup.name, "name_from_markup", node, notes)
    brand = json_text(node.get("brand")) or _noted(lambda: page.markup.brand, "brand_from_markup", node, notes)
    sku = json_text(node.get("sku"))
    sku = sku.upper() if sku else url_sku
    prices = offer_prices(node.get("offers"), notes)
    # Several currencies among the offers: only the page's own currency is comparable (never 25 GBP < 30 EUR).
    shown = page_currency(page) if len({code for _, code in prices if code}) > 1 else None
    price, currency = choose_offer(prices, shown, notes)
    if price is None:
        price, currency, _ = page.markup.details
        _noted(lambda: price, "price_from_markup", node, notes)
    colour = json_text(node.get("color")) or page.markup.details[2]
    image_urls = [absolute_url(url, html_lib.unescape(u) if "&" in u else u) for u in json_ld_image_urls(node.get("image"))]
    image_urls = allowed_image_urls(image_urls, url, notes)
    if not image_urls:
        image_urls = allowed_image_urls(page.markup.gallery_urls(name), url, notes)
        _noted(lambda: image_urls, "images_from_markup", node, notes)
    if node:
        _cross_check(page, node, name, price, notes)
    category, category_path = page_category(page, nodes, brand, name, notes)
    return {
        "item_id": item_id_for(sku, url),
        "sku": sku,
        "name": name,
        "brand": brand,
        "price": price,
        "currency": currency,
        "colour": colour,
        "url": url,
        "images": image_records(image_urls),
        "parsed_by": "html" if not node else "json-ld+html" if page.dom_built else "json-ld",
        "category": category,
        "category_path": category_path,
    }


def _cross_check(page: Page, node: dict, name: str | None, price: float | None, notes: list[str]) -> None:
    """JSON-LD wins, but where the visible header says otherwise (a stale price, another product's name) the
    disagreement is logged and noted `json_ld_disagrees/<field>`: the header fragment costs ~0.1 ms, no DOM."""
    from_json_ld = _json_ld_header_values(node, name, price)
    if not page.dom_built:
        fragment = page.header_fragment
        if fragment is None or _header_text_agrees(fragment, page.url, page.language, *from_json_ld):
            return
    header = page.header
    if header is None or header.h1 is None:
        return
    shown_price, _, shown_colour = header.details
    pairs = zip(("name", "price", "colour"), from_json_ld, (header.name, shown_price, shown_colour))
    for field, from_json_ld, shown in pairs:
        if from_json_ld is None or shown is None:
            continue
        same = abs(from_json_ld - shown) < 0.005 if field == "price" else fold(str(from_json_ld)) == fold(str(shown))
        if not same:
            notes.append(f"json_ld_disagrees/{field}")
            logger.warning("%s: JSON-LD and markup disagree on the %s: JSON-LD %r (kept), markup %r", page.url, field, from_json_ld, shown)


def _json_ld_header_values(node: dict, name: str | None, price: float | None) -> tuple[str | None, float | None, str | None]:
    """(name, price, colour) as the JSON-LD states them, each None where it states none (nothing to cross-check)."""
    return (json_text(node.get("name")) and name, price if node.get("offers") is not None else None,
            json_text(node.get("color")))


def _header_text_agrees(fragment: str, url: str, language: str, name: str | None, price: float | None, colour: str | None) -> bool:
    """True when the header fragment's text surely agrees with the JSON-LD; False when it may not (then the
    fragment's DOM decides, `Markup`, as before).

    The text is read by splitting the fragment at its tags, without lxml (~10x cheaper). Sure means: every text
    the DOM check could take as the shown value says the same. The h1's text is the name (no link inside the h1:
    a brand link there is cut from the name by the DOM check), every text after it that reads as a price is the
    JSON-LD price (a superset of the DOM check's candidates: struck prices count here, so a sale page is decided
    by the DOM), and every colour label's value is the JSON-LD colour. Markup whose text a tag split cannot read
    (scripts, styles, comments, CDATA) or a second heading is left to the DOM.
    """
    lowered = fragment.lower()
    if any(marker in lowered for marker in ("<script", "<style", "<!", "<textarea", "<title")):
        return False
    h1_open = TAG.match(fragment)
    h1_close = lowered.find("</h1")
    if h1_open is None or h1_close == -1 or lowered.find("<h1", 3) != -1:
        return False
    inner = fragment[h1_open.end() : h1_close]
    links = [tag for tag in TAG.finditer(inner) if tag.group()[:3].lower() in ("<a ", "<a>", "<a\n")]
    if len(links) > 1:
        return False
    if links and _brand_like_href(tag_attributes(links[0].group()).get("href"), url):
        # The brand link inside the h1 is not part of the name (as `Markup.name` reads it).
        link_end = inner.lower().find("</a", links[0].end())
        if link_end == -1:
            return False
        inner = inner[: links[0].start()] + inner[link_end:]
    shown_name = clean_text("".join(html_lib.unescape(text) for text in TAG.split(inner)))
    if not shown_name or not shown_name.strip(" -\u2013|:"):
        return False  # an empty h1 (the DOM check takes the next one), or a name the DOM check reads otherwise
    if name is not None and fold(name) != fold(shown_name.strip(" -\u2013|:")):
        return False
    rest = fragment[h1_close:]
    parts = TAG_SPLIT.split(rest)  # text, tag, text, tag, ..., text
    # (index in parts, text) of every text the DOM check could read: not empty, not in another product's card.
    if "<article" in lowered:
        indexed = _texts_outside_articles(parts)
        if indexed is None:
            return False
    else:
        indexed = [(index, text) for index, text in ((i, parts[i].strip()) for i in range(0, len(parts), 2)) if text]
    texts = [html_lib.unescape(text).strip() if "&" in text else text for _, text in indexed]
    if price is not None:
        for (index, _), text in zip(indexed, texts):
            if PRICE_TEXT.search(text) and not _whole_struck_element(parts, index):
                shown = parse_price_text(text, language)
                if shown is not None and abs(shown[0] - price) >= 0.005:
                    return False
    if colour is not None and (":" in rest or "&" in rest):
        for index, text in enumerate(texts):
            label, colon, after = text.partition(":")
            if colon and label.strip().casefold() in COLOUR_LABELS:
                value = clean_text(after) or (clean_text(texts[index + 1]) if index + 1 < len(texts) else None)
                if value is None or fold(value) != fold(colour):
                    return False
    return True


def _texts_outside_articles(parts: list[str]) -> list[tuple[int, str]] | None:
    """(index, stripped text) of the non-empty texts of a tag split outside <article> elements; None when the
    articles do not nest as a tag split can follow (a close without an open)."""
    found = []
    in_article = 0
    for index in range(0, len(parts), 2):
        if index:
            tag = parts[index - 1][:9].lower()
            if tag.startswith("<article") and tag[8:9] in (" ", ">", "\n", "\t"):
                in_article += 1
            elif tag.startswith("</article"):
                in_article -= 1
                if in_article < 0:
                    return None
        text = parts[index].strip()
        if text and not in_article:
            found.append((index, text))
    return found


def _whole_struck_element(parts: list[str], index: int) -> bool:
    """Is text `parts[index]` the whole content of a struck element (`<s>81,99 €</s>`, a line-through style)? Then
    the DOM check surely skips it as the old price too (its parent element is struck)."""
    if index == 0 or index + 1 >= len(parts):
        return False
    opening, closing = parts[index - 1], parts[index + 1].lower()
    name = re.match(r"<([a-zA-Z][a-zA-Z0-9]*)", opening)
    if name is None or closing.rstrip("> \t\n") != f"</{name.group(1).lower()}":
        return False
    return name.group(1).lower() in STRUCK_TAGS or "line-through" in tag_attributes(opening).get("style", "")


def _unread_json_ld(notes: list[str]) -> str:
    skipped = [note for note in ("json_ld_too_deep", "invalid_json_ld") if note in notes]
    return f" (ld+json scripts skipped unread: {', '.join(skipped)})" if skipped else ""


def _noted(value: Callable[[], Any], note: str, node: dict, notes: list[str]) -> Any:
    """value(): a field from the markup; noted when a JSON-LD Product exists (the site changed?)."""
    found = value()
    if found and node:
        notes.append(note)
    return found


def brand_path(page: str | Selector, url: str) -> str | None:
    """The path segment of the product's brand link (`/levis/` -> "levis"): the shop's own brand key."""
    link = Markup(as_selector(page), url).brand_link
    if link is None:
        return None
    return unquote(urlsplit(urljoin(url, link.get("href", "").strip())).path.strip("/")) or None


# --- category (breadcrumb trail) ------------------------------------------------------------------------
# The shop's trail is home > category levels > (maybe the brand) > the product. Real zalando pages start at the
# gender level (`Herren > Jeans > Levi's®`, no home, no product); the demo's at `Startseite`. Read from the
# already-decoded JSON-LD nodes (no DOM, no second scan), else from a visible breadcrumb <nav> (a fragment of the
# page, or the DOM when one was built anyway). A trail that cannot be read right gives no category: never a guess.

HOME_NAMES = frozenset({"startseite", "home", "homepage", "zalando", "accueil"})
BREADCRUMB_TYPE = "breadcrumblist"
# A breadcrumb <nav> is named so by its aria-label (the WAI-ARIA pattern); class names are hashed on the real site.
BREADCRUMB_NAV = re.compile(r"""<nav\b[^>]*\baria-label\s*=\s*["']?[^"'>]*breadcrumb[^>]*>""", re.IGNORECASE)
BREADCRUMB_NAV_BYTES = re.compile(BREADCRUMB_NAV.pattern.encode(), re.IGNORECASE)
MAX_NAV_CHARS = 20_000  # a trail is a few hundred characters; a "nav" larger than this is not one
CATEGORY_SEPARATOR = " > "


def _is_type(node: Any, name: str) -> bool:
    if not isinstance(node, dict):
        return False
    types = node.get("@type")
    types = types if isinstance(types, list) else [types]
    return any(isinstance(t, str) and t.rsplit("/", 1)[-1].lower() == name for t in types)


def _json_ld_trail(breadcrumbs: dict) -> list[tuple[str, str | None, bool]] | None:
    """The crumbs of one BreadcrumbList in position order; None when any element is unreadable (not an object, a
    name that is not a non-empty string, an itemListElement that is not a list), since a trail with a hole in it
    would put a piece under the wrong level."""
    elements = breadcrumbs.get("itemListElement")
    if isinstance(elements, dict):
        elements = [elements]
    if not isinstance(elements, list) or not elements:
        return None
    crumbs = []
    for index, element in enumerate(elements):
        if not isinstance(element, dict):
            return None
        item = element.get("item")
        name = element.get("name")
        url = item if isinstance(item, str) else None
        if isinstance(item, dict):
            name = name if name is not None else item.get("name")
            url = next((value for value in (item.get("@id"), item.get("url")) if isinstance(value, str)), None)
        name = clean_text(name) if isinstance(name, str) else None
        if name is None:
            return None
        position = element.get("position")
        if isinstance(position, str) and position.strip().isdigit():
            position = int(position)
        crumbs.append((position if isinstance(position, int) and not isinstance(position, bool) else None, index, name, url))
    if all(position is not None for position, *_ in crumbs):
        crumbs.sort(key=lambda crumb: (crumb[0], crumb[1]))
    return [(name, (url.strip() or None) if url else None, False) for _, _, name, url in crumbs]


def json_ld_breadcrumbs(nodes: Iterable[dict], notes: list[str]) -> list[tuple[str, str | None, bool]] | None:
    """The first readable BreadcrumbList among the JSON-LD nodes (also a WebPage's `breadcrumb`); None when there
    is none, noted `breadcrumb_invalid` when there was one but none could be read."""
    found = False
    for node in nodes:
        candidate = node if _is_type(node, BREADCRUMB_TYPE) else node.get("breadcrumb")
        if not _is_type(candidate, BREADCRUMB_TYPE):
            continue
        found = True
        trail = _json_ld_trail(candidate)
        if trail is not None:
            return trail
    if found:
        notes.append("breadcrumb_invalid")
    return None


def breadcrumb_nav_root(content: str | bytes, encoding: str = "utf-8") -> etree._Element | None:
    """The page's visible breadcrumb <nav>, parsed alone (no DOM of the page): None when there is none."""
    pattern = BREADCRUMB_NAV_BYTES if isinstance(content, bytes) else BREADCRUMB_NAV
    end_tag = b"</nav" if isinstance(content, bytes) else "</nav"
    for match in pattern.finditer(content):
        if not _in_markup(content, match.start()):
            continue
        end = content.find(end_tag, match.end(), match.end() + MAX_NAV_CHARS)
        if end == -1:
            continue
        fragment = content[match.start() : end]
        text = fragment.decode(encoding, errors="replace") if isinstance(fragment, bytes) else fragment
        document = f"<html><body>{text}</nav></body></html>".encode("utf-8")
        return etree.fromstring(document, FRAGMENT_PARSER)
    return None


def nav_breadcrumbs(root: etree._Element | None) -> list[tuple[str, str | None, bool]] | None:
    """The crumbs of the first breadcrumb <nav> under `root`: its list items (else its links), each with its link
    and whether it is marked the current page (`aria-current`)."""
    if root is None:
        return None
    navs = root.xpath("//nav[contains(translate(@aria-label, 'ABCDEMRU', 'abcdemru'), 'breadcrumb')]")
    if not navs:
        return None
    entries = navs[0].xpath(".//li") or navs[0].xpath(".//a")
    crumbs = []
    for entry in entries:
        name = clean_text("".join(entry.itertext()))
        if not name:
            continue
        links = [entry] if entry.tag == "a" else entry.xpath(".//a[@href]")
        url = ((links[0].get("href") or "").strip() or None) if links else None
        current = bool(entry.xpath("descendant-or-self::*[@aria-current]"))
        crumbs.append((name, url, current))
    return crumbs or None


def _brand_form(text: str) -> str:
    """`Levi's®`, `Levi’s` and `LEVIS` alike: the brand as the trail may spell it."""
    return re.sub(r"\W", "", fold(text))


def _is_page_url(url: str, page_url: str) -> bool:
    """A crumb URL that is a product page: this one, or any with a SKU (never a category level)."""
    absolute = absolute_url(page_url, url)
    return bool(SKU_IN_URL.search(urlsplit(absolute).path)) or url_without_query(absolute) == url_without_query(page_url)


def category_from_trail(crumbs: list[tuple[str, str | None, bool]] | None, page_url: str, brand: str | None,
                        name: str | None) -> tuple[str | None, str | None]:
    """(category, category_path) of a trail: the levels between home and the product without the brand, the
    first of them the category; (None, None) when none is left."""
    if not crumbs:
        return None, None
    crumbs = list(crumbs)
    first_name, first_url, _ = crumbs[0]
    if fold(first_name) in HOME_NAMES or (first_url and urlsplit(absolute_url(page_url, first_url)).path in ("", "/")):
        crumbs.pop(0)
    if crumbs:
        last_name, last_url, current = crumbs[-1]
        if current or (name and fold(last_name) == fold(name)) or (last_url and _is_page_url(last_url, page_url)):
            crumbs.pop()
    brand_form = _brand_form(brand) if brand else None
    levels = [crumb_name for crumb_name, _, _ in crumbs if not (brand_form and _brand_form(crumb_name) == brand_form)]
    if not levels:
        return None, None
    return levels[0], CATEGORY_SEPARATOR.join(levels)


def page_category(page: Page, nodes: list[dict], brand: str | None, name: str | None, notes: list[str]) -> tuple[str | None, str | None]:
    """The product's (category, category_path): the JSON-LD BreadcrumbList, else the visible breadcrumb <nav>
    (the page's DOM when it was built anyway, else the nav alone), else (None, None)."""
    found = category_from_trail(json_ld_breadcrumbs(nodes, notes), page.url, brand, name)
    if found[0] is None:
        root = page.markup.root if page.dom_built else breadcrumb_nav_root(page.content, page.encoding)
        found = category_from_trail(nav_breadcrumbs(root), page.url, brand, name)
        if found[0] is not None:
            notes.append("category_from_markup")
    return found


def category_from_listing(listing_url: str | None) -> str | None:
    """The category segment of a `/{category}/{brand-path}/` listing URL (the crawl's last resort); None for a
    brand listing `/{brand-path}/`."""
    if not listing_url:
        return None
    segments = [segment for segment in urlsplit(listing_url).path.split("/") if segment]
    return clean_text(unquote(segments[0])) if len(segments) == 2 else None


# --- brand index and listings ---------------------------------------------------------------------------


def parse_brand_index(page: str | Selector, url: str) -> list[dict]:
    """Brands on the shop's brand index: list links to `/{brand-path}/`, navigation links left out."""
    sel = as_selector(page)
    host = urlsplit(url).netloc
    brands: dict[str, dict] = {}
    for link in sel.root.xpath("//li//a[@href][not(ancestor::nav)][not(ancestor::header)][not(ancestor::footer)]"):
        absolute = urljoin(url, link.get("href").strip()).split("#", 1)[0]
        parts = urlsplit(absolute)
        if parts.netloc != host or parts.query or not _brand_like_href(absolute, url):
            continue
        path = unquote(parts.path.strip("/"))
        name = clean_text("".join(link.itertext())) or clean_text(link.get("title"))
        if name and path not in brands:
            brands[path] = {"name": name, "path": path, "url": absolute}
    return list(brands.values())


def product_links(page: str | Selector, url: str) -> list[str]:
    """Product page URLs (the SKU URL pattern) linked from a listing, in page order, once each."""
    links: dict[str, None] = {}
    for href in _hrefs(page):
        absolute = urljoin(url, href).split("#", 1)[0]
        if SKU_IN_URL.search(urlsplit(absolute).path):
            links.setdefault(absolute)
    return list(links)


def _hrefs(page: str | Selector) -> list[str]:
    """Every <a href> of the page, stripped, once each in page order: a listing links each product a few times
    (image, name, price) among ~500 links, and each is joined and split once instead of once per link."""
    return list(dict.fromkeys(href.strip() for href in as_selector(page).root.xpath("//a/@href")))


def page_number(url: str) -> int:
    for key, value in parse_qsl(urlsplit(url).query):
        if key == "p" and value.isdigit():
            return int(value)
    return 1


def listing_page_url(url: str, number: int) -> str:
    """Page N of a listing: `?p=N`, page 1 without it (so it dedupes with the listing's own URL)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "p"]
    if number > 1:
        query.append(("p", str(number)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def pagination_links(page: str | Selector, url: str) -> list[str]:
    """Other pages of the same listing (`?p=N` links on its path), by page number."""
    path = urlsplit(url).path
    pages: dict[int, str] = {}
    for href in _hrefs(page):
        if "p=" not in href and href and not href.startswith("#"):
            continue  # its query is its own (only an empty or #fragment href keeps the page's): no ?p=
        absolute = urljoin(url, href)
        parts = urlsplit(absolute)
        if parts.path != path or "p=" not in parts.query:
            continue
        number = page_number(absolute)
        if number != page_number(url):
            pages.setdefault(number, listing_page_url(absolute, number))
    return [pages[number] for number in sorted(pages)]
