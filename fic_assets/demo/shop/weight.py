"""The real page's weight around the product: what makes a Zalando product page ~700 KB instead of ~30.

The real shop renders through its Rendering Engine: `x-wrapper-re-*` custom elements, each followed by a
`<script data-re-asset type="application/json">` hydration blob (the component's state: menus, the product with
its sizes, every recommendation's data, reviews, translations), inline styles, tracking scripts, React's
`<!-- -->` text markers. The demo shop serves the same kinds of elements in about the real proportions, so the
crawler and its benchmarks meet real-size pages (docs/shop-markup.md, "Page weight").

Deterministic per seed, and cheap: every fragment is generated once (per seed, or per product and base URL) and
kept as finished UTF-8 bytes, so a page is a join of bytes (a 700 KB str with one "€" costs more to encode than to
join). Nothing in here is the product's truth: a crawler that reads
the hydration blobs instead of the JSON-LD or the visible markup reads other products' data too.
"""

from __future__ import annotations

import json
import random
from functools import cached_property, lru_cache

from fic_assets.demo.shop.catalogue import CATEGORIES, Catalogue, Product, format_eur, image_url, seeded

SUBCATEGORIES = ("Jeans", "T-Shirts & Tops", "Pullover & Strickjacken", "Jacken", "Mäntel", "Hosen", "Kleider",
                 "Röcke", "Blusen & Tuniken", "Shorts", "Sportbekleidung", "Wäsche", "Bademode", "Sneaker",
                 "Stiefel", "Sandalen", "Taschen", "Accessoires")
WORDS = ("bequem", "Baumwolle", "Passform", "nachhaltig", "Material", "weich", "robust", "Alltag", "klassisch",
         "Schnitt", "elastisch", "Qualität", "Größe", "leicht", "Lieferung", "Rücksendung", "Pflege", "Stoff",
         "modern", "zeitlos", "Saison", "Kombination", "Detail", "Verarbeitung", "Komfort", "Stil", "Farbe")
REVIEW_POOL = 300
REVIEWS_PER_PRODUCT = 60
TRANSLATIONS = 3000
CSS_RULES = 1400
MENU_LINKS_PER_CATEGORY = 90
HEX = "0123456789abcdef"


def asset_json(data: object) -> str:
    """JSON for inside a <script>: "</" would end the element early (the shop's pages.script_json, kept here to
    stay importable without jinja)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


# One draw a string, not one a character: the shop makes each product page's weight (~600 KB) when it is first
# asked for, and a crawl asks for every product once (choice per character: ~20 ms a page, most of the shop's time).
TOKEN_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"


def hex_id(rng: random.Random, length: int = 32) -> str:
    return f"{rng.getrandbits(4 * length):0{length}x}"


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words)).capitalize() + "."


def token(rng: random.Random, length: int = 6) -> str:
    return "".join(rng.choices(TOKEN_CHARACTERS, k=length))


def wrapped(number: int, name: str, markup: str, state: str) -> str:
    """One Rendering Engine component: its markup in a custom element, its state right after it."""
    tag = f"x-wrapper-re-1-{number}"
    return (f'<{tag} data-re-name="{name}">{markup}</{tag}>'
            f'<script data-re-asset type="application/json" data-re-id="{name}">{state}</script>\n')


class PageWeight:
    """The fragments of one catalogue's pages, each made once and kept as text."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.seed = catalogue.seed

    def rng(self, *parts: object) -> random.Random:
        return seeded(self.seed, "weight", *parts)

    # --- shared by every page ---------------------------------------------------------------------------

    @cached_property
    def head(self) -> str:
        """Inline styles and tracking scripts of the <head> (~90 KB)."""
        rng = self.rng("head")
        rules = "".join(
            f".{token(rng, 6)}{{display:{rng.choice(('flex', 'block', 'grid', 'inline-flex'))};margin:0 {rng.randint(0, 24)}px;"
            f"padding:{rng.randint(0, 16)}px;color:#{hex_id(rng, 6)};font-size:{rng.randint(11, 24)}px}}"
            for _ in range(CSS_RULES))
        tags = {f"tag_{n}": {"id": hex_id(rng, 12), "trigger": rng.choice(("pageview", "click", "scroll", "timer")),
                             "vars": [token(rng, 8) for _ in range(6)], "consent": rng.choice(("marketing", "analytics"))}
                for n in range(120)}
        script = ";".join(f"var {token(rng, 3)}=function({token(rng, 1)}){{return {token(rng, 1)}.{token(rng, 5)}"
                          f"({rng.randint(0, 999)})}}" for _ in range(300))
        return (f"<style data-re-css>{rules}</style>\n"
                f"<script>window.dataLayer=window.dataLayer||[];window.__tagConfig={asset_json(tags)};</script>\n"
                f"<script>(function(w,d){{{script}}})(window,document);</script>\n")

    @cached_property
    def top(self) -> str:
        """The header's mega menu and its state (~100 KB)."""
        rng = self.rng("menu")
        menu, items = [], []
        for path, label in CATEGORIES.items():
            links = []
            for n in range(MENU_LINKS_PER_CATEGORY):
                sub = rng.choice(SUBCATEGORIES)
                href = f"/{path}-{token(rng, 5).lower()}-{n}/"
                links.append(f'<li class="{token(rng)}"><a class="{token(rng)}" href="{href}">{sub}<!-- --> {n}</a></li>')
                items.append({"id": hex_id(rng, 16), "label": sub, "href": href, "category": label,
                              "tracking": {"component": "menu", "position": n, "experiment": hex_id(rng, 8)},
                              "teaser": {"image": f"/static/teaser/{hex_id(rng)}.jpg", "alt": f"{sub} entdecken"}})
            menu.append(f'<div class="{token(rng)}"><span class="{token(rng)}">{label}</span><ul>{"".join(links)}</ul></div>')
        # CMS snippets in the state quote markup: a parser that ignores script boundaries trips over them.
        state = {"menu": items, "seo": {"snippet": '<h1 class="seo">Mode online kaufen</h1>',
                                        "schema": '<script type="application/ld+json">{"@type": "WebSite"}</script>'}}
        return wrapped(1, "header-menu", "".join(menu), asset_json(state))

    @cached_property
    def footer(self) -> str:
        """Footer links, payment logos and the translations every component reads (~130 KB)."""
        rng = self.rng("footer")
        links = "".join(f'<li><a href="/{token(rng, 7).lower()}/">{sentence(rng, 2)[:-1]}</a></li>' for _ in range(120))
        logos = "".join(f'<img src="/static/pay/{hex_id(rng, 12)}.svg" alt="Zahlungsart {n}" width="40" height="24">' for n in range(14))
        translations = {f"{token(rng, 4)}.{token(rng, 8)}.{token(rng, 6)}": sentence(rng, rng.randint(2, 9)) for _ in range(TRANSLATIONS)}
        return wrapped(9, "footer", f"<ul>{links}</ul><div>{logos}</div>", asset_json({"translations": translations}))

    @cached_property
    def review_pool(self) -> list[str]:
        rng = self.rng("reviews")
        return [asset_json({"id": hex_id(rng, 24), "rating": rng.randint(1, 5), "title": sentence(rng, 3),
                            "text": " ".join(sentence(rng, rng.randint(6, 18)) for _ in range(rng.randint(2, 6))),
                            "fit": rng.choice(("fällt klein aus", "passt genau", "fällt groß aus")),
                            "author": {"name": token(rng, 7), "verified": rng.random() < 0.8},
                            "helpful": rng.randint(0, 90)})
                for _ in range(REVIEW_POOL)]

    @cached_property
    def filters(self) -> str:
        """A listing's filter state (~80 KB): facets with counts."""
        rng = self.rng("filters")
        facets = [{"key": token(rng, 8), "label": rng.choice(SUBCATEGORIES),
                   "values": [{"id": hex_id(rng, 10), "label": sentence(rng, 2)[:-1], "count": rng.randint(1, 900),
                               "href": f"?{token(rng, 5).lower()}={token(rng, 4).lower()}"} for _ in range(40)]}
                  for _ in range(22)]
        return asset_json({"facets": facets})

    # --- per product and base URL ---------------------------------------------------------------------

    def card_state(self, base_url: str, sku: str) -> str:
        """One product as a recommendation or listing card's state (~4 KB): its gallery at every width too."""
        product = self._by_sku[sku]
        rng = self.rng("card", sku)
        return asset_json({
            "sku": product.sku, "name": product.name, "brand": product.brand.name, "price": format_eur(product.price),
            "media": [{"url": image_url(base_url, image, width), "width": width}
                      for image in product.images for width in (156, 300, 600, 1024, 1800)],
            "flags": [rng.choice(("new", "sustainable", "deal", "plus")) for _ in range(3)],
            "sizes": [{"size": offer.size, "sku": offer.sku, "available": offer.in_stock} for offer in product.offers],
            "tracking": {"impression": hex_id(rng, 64), "click": hex_id(rng, 64), "experiment": hex_id(rng, 16)},
        })

    @cached_property
    def _by_sku(self) -> dict[str, Product]:
        return {product.sku: product for product in self.catalogue.products}

    def product_state(self, base_url: str, product: Product) -> str:
        """The product component's state: sizes with their offers, attributes, description (~15 KB)."""
        rng = self.rng("product", product.sku)
        return asset_json({
            "product": {
                "sku": product.sku, "name": product.name, "brand": product.brand.name,
                "sizes": [{"size": offer.size, "sku": offer.sku, "price": format_eur(offer.price),
                           "delivery": {"days": rng.randint(1, 5), "carrier": token(rng, 5)},
                           "stock": rng.randint(0, 40) if offer.in_stock else 0} for offer in product.offers],
                "media": [image_url(base_url, image, width) for image in product.images for width in (156, 600, 1800)],
                "attributes": [{"key": token(rng, 8), "label": rng.choice(WORDS), "value": sentence(rng, rng.randint(1, 4))}
                               for _ in range(60)],
                "description": " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(24)),
                "sizeChart": [[rng.randint(60, 130) for _ in range(8)] for _ in range(12)],
            },
        })

    def reviews(self, product: Product) -> str:
        rng = self.rng("product-reviews", product.sku)
        picked = rng.sample(range(REVIEW_POOL), REVIEWS_PER_PRODUCT)
        body = "".join(f'<li class="{token(rng)}"><span>{rng.randint(1, 5)} / 5</span></li>' for _ in range(12))
        state = '{"reviews":[' + ",".join(self.review_pool[n] for n in picked) + "]}"
        return wrapped(5, "reviews", f"<ul>{body}</ul>", state)

    # --- whole pages ------------------------------------------------------------------------------------

    @cached_property
    def shared(self) -> dict[str, bytes]:
        return {"weight_head": self.head.encode(), "weight_top": self.top.encode(), "weight_footer": self.footer.encode(),
                "filters": wrapped(4, "filters", "", self.filters).encode()}

    @lru_cache(maxsize=8192)
    def _encoded(self, kind: str, base_url: str, sku: str) -> bytes:
        product = self._by_sku[sku]
        if kind == "card":
            return self.card_state(base_url, sku).encode()
        if kind == "product":
            return self.product_state(base_url, product).encode()
        return self.reviews(product).encode()

    def _cards(self, base_url: str, products: list[Product], name: str) -> bytes:
        return (b'{"component":"' + name.encode() + b'","items":['
                + b",".join(self._encoded("card", base_url, p.sku) for p in products) + b"]}")

    def product_parts(self, base_url: str, product: Product, recommended: list[Product]) -> dict[str, bytes]:
        """What pages.Shop splices into the product page: `weight_head`, `weight_top`, `weight_footer`, and
        `product_state` / `recommendation_state` / `reviews` around the product's own markup."""
        return {
            **self.shared,
            "product_state": self._encoded("product", base_url, product.sku),
            "recommendation_state": self._cards(base_url, recommended, "recommendations"),
            "reviews": self._encoded("reviews", base_url, product.sku),
        }

    def listing_parts(self, base_url: str, products: list[Product]) -> dict[str, bytes]:
        return {**self.shared, "listing_state": self._cards(base_url, products, "catalog")}
